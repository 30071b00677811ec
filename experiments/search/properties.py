"""What a run must not do: the properties a search tries to break.

Each property reads a run's audit (``experiments.audit``) and names the
operations that break it, so an explanation can show them one by one.
"""

from __future__ import annotations

import enum

from experiments.search.bank import ScheduleRun
from experiments.workload import Operation
from transports.call import CallResult, Outcome


class Property(enum.Enum):
    NO_DUPLICATE = "no-duplicate"  # no operation applied twice or more
    NO_PHANTOM = "no-phantom"  # nothing applied that the client saw fail or give up on
    NO_LOST_ACK = "no-lost-ack"  # nothing the client saw ok is missing from the ledger
    NO_DRIFT = "no-drift"  # ledger total = opening + what the ok replies account for
    ALL_OK = "all-ok"  # every call ends ok

    @property
    def meaning(self) -> str:
        return _MEANING[self]

    def holds(self, run: ScheduleRun) -> bool:
        a = run.audit
        return {
            Property.NO_DUPLICATE: a.duplicated == 0,
            Property.NO_PHANTOM: a.phantom == 0,
            Property.NO_LOST_ACK: a.lost == 0,
            Property.NO_DRIFT: a.money_drift == 0,
            Property.ALL_OK: a.ok == a.ops,
        }[self]

    def culprits(self, run: ScheduleRun) -> list[tuple[Operation, CallResult, int]]:
        """(operation, what its client was told, times applied) of each breaking operation."""
        out = []
        applied = {op.request_id: 0 for op in run.operations}
        for row in run.rows:
            if row[1] in applied:
                applied[row[1]] += 1
        for op, result in zip(run.operations, run.results, strict=True):
            n, ok = applied[op.request_id], result.outcome is Outcome.OK
            breaks = {
                Property.NO_DUPLICATE: n >= 2,
                Property.NO_PHANTOM: n >= 1 and not ok,
                Property.NO_LOST_ACK: ok and n == 0,
                Property.NO_DRIFT: n != int(ok),
                Property.ALL_OK: not ok,
            }[self]
            if breaks:
                out.append((op, result, n))
        return out


_MEANING = {
    Property.NO_DUPLICATE: "no deposit is applied twice",
    Property.NO_PHANTOM: "no deposit is applied when its client was told failed or unknown",
    Property.NO_LOST_ACK: "every deposit the client was told ok is in the ledger",
    Property.NO_DRIFT: "the ledger total moves by exactly what the ok replies say",
    Property.ALL_OK: "every call ends ok",
}
