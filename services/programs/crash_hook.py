"""Crash faults: the hook that SIGKILLs a bank server at seeded points.

``--faults crash=P`` makes a bank server kill itself with SIGKILL (no cleanup;
only what SQLite already committed survives) at a fraction ``P`` of the
deposit and withdrawal attempts it executes, at the point ``--crash-point``
names. ``experiments.supervisor`` restarts it on the same ledger. Kept apart
from the server so the experiments and tests can use the decision rule
without starting one.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from collections.abc import Callable

from transports.endpoint import AFTER_APPLY, BEFORE_APPLY
from transports.wire import Request

__all__ = ["CRASH_OPS", "CRASH_POINTS", "RANDOM_POINT", "ProcessCrasher"]

RANDOM_POINT = "random"
CRASH_POINTS = (BEFORE_APPLY, AFTER_APPLY, RANDOM_POINT)
# Only requests that change the ledger are crash candidates: a crash around a
# login or a balance query shows nothing about duplicated money.
CRASH_OPS = frozenset({"bank.deposit", "bank.withdraw"})


class ProcessCrasher:
    """Crash hook: SIGKILL this process at a seeded fraction of deposits and withdrawals.

    Whether attempt ``a`` of request ``id`` crashes the server, and where, is a
    pure function of ``(seed, id, a)``: two draws from
    ``random.Random(f"{seed}/server/crash/{id}/{a}")``, crash if the first is
    below ``rate``, before apply if the second is below 0.5 (for ``random``).
    So the decisions do not depend on thread timing or on how many requests an
    earlier incarnation saw; a retry (next attempt) gets a fresh draw, so a
    restarted server does not crash on the same request forever; TCP, UDP and
    every semantics face the same draws; and a higher rate crashes at a
    superset of the attempts of a lower one (common random numbers). The
    decision is taken before apply and remembered per thread (``finish`` runs
    on one thread) for the after-apply check. ``kill`` is replaceable for tests.
    """

    def __init__(
        self,
        rate: float,
        point: str,
        seed: int,
        kill: Callable[[Request, str], None] | None = None,
    ) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"crash point must be one of {', '.join(CRASH_POINTS)}")
        self.rate = rate
        self.point = point
        self.seed = seed
        self._pending = threading.local()  # this thread's request dies after apply
        self._kill = kill or _sigkill

    def decide(self, request: Request) -> str | None:
        """Where attempt ``request.attempt`` of ``request`` crashes the server, or None."""
        rng = random.Random(f"{self.seed}/server/crash/{request.id}/{request.attempt}")
        u_crash, u_point = rng.random(), rng.random()
        if u_crash >= self.rate:
            return None
        if self.point == RANDOM_POINT:
            return BEFORE_APPLY if u_point < 0.5 else AFTER_APPLY
        return self.point

    def __call__(self, request: Request, stage: str) -> None:
        if request.op not in CRASH_OPS:
            return
        if stage == AFTER_APPLY:
            if getattr(self._pending, "doomed", False):
                self._pending.doomed = False
                self._kill(request, AFTER_APPLY)
            return
        point = self.decide(request)
        self._pending.doomed = point == AFTER_APPLY
        if point == BEFORE_APPLY:
            self._kill(request, BEFORE_APPLY)


_dying = threading.Lock()  # the first thread to crash the process is the only one


def _sigkill(request: Request, point: str) -> None:
    """Die at once, as a power cut would kill the process: no handlers, no cleanup."""
    _dying.acquire()  # a second thread deciding to crash just waits for the kill
    # One write() per line, so the supervisor reads it whole before the kill.
    line = f"[CRASH] {point} {request.op} {request.id} {request.attempt}\n"
    os.write(sys.stderr.fileno(), line.encode())
    os.kill(os.getpid(), signal.SIGKILL)
