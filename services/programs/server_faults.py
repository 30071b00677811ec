"""Server faults: the seeded injections a server program adds to its service.

``ServerFaults`` (the ``app_fail`` and ``crash`` keys of ``--faults``) says how
often; this module builds what injects them: ``AppFailures``, the lab's random
``TransactionFailed``, for the ledger's ``fault_point``, and the crash hook
(``services.programs.crash_hook.ProcessCrasher``) for the endpoint. Link
faults are the transports' business (``transports.faults.LinkFaults``).
"""

from __future__ import annotations

import random
import threading

from services.errors import TransactionFailed
from services.programs.crash_hook import ProcessCrasher
from transports.faults import ServerFaults

__all__ = ["AppFailures", "app_failures", "crash_hook", "should_fail"]


def should_fail(faults: ServerFaults, rng: random.Random) -> bool:
    """The application-failure draw: always one draw, true with probability ``app_fail``."""
    return rng.random() < faults.app_fail


class AppFailures:
    """The lab server's random failure, as a ``Ledger`` fault point.

    Each call draws once from ``random.Random(seed)`` (the generator the
    ledger itself used to hold, so seeded runs reproduce) and raises
    ``TransactionFailed`` with probability ``app_fail``. The ledger calls it
    inside the write transaction, so draws happen in commit order. With
    ``app_fail`` 0 it draws nothing.
    """

    def __init__(self, faults: ServerFaults, seed: int) -> None:
        self.faults = faults
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.faults.app_fail <= 0.0:
            return  # do not consume draws: keeps seeded runs comparable
        with self._lock:
            failed = should_fail(self.faults, self._rng)
        if failed:
            raise TransactionFailed("Transaction failed")


def app_failures(faults: ServerFaults, seed: int) -> AppFailures | None:
    """The ledger's fault point for ``faults``, or None when ``app_fail`` is 0."""
    return AppFailures(faults, seed) if faults.app_fail > 0.0 else None


def crash_hook(faults: ServerFaults, point: str, seed: int) -> ProcessCrasher | None:
    """The endpoint's crash hook for ``faults``, or None when ``crash`` is 0."""
    return ProcessCrasher(faults.crash, point, seed) if faults.crash > 0.0 else None
