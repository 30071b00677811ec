"""The audit: what the ledger applied against what each client was told.

Like Jepsen's bank checker, every logical operation ends ``ok``, ``failed``
or ``unknown``; the audit reads the real ledger afterwards and counts, per
operation, how many times it was applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from experiments.framework.tables import percentile
from experiments.workload import Operation
from transports.call import CallResult, Outcome

__all__ = ["Audit", "audit", "percentile"]


@dataclass(frozen=True)
class Audit:
    ops: int
    ok: int
    failed: int
    unknown: int
    executions: int  # ledger rows produced by the planned operations
    duplicated: int  # operations applied twice or more
    phantom: int  # applied at least once although the client saw failed or unknown
    phantom_failed: int  # the worst kind: applied although the client was told it failed
    lost: int  # the client saw ok but the ledger never applied it
    money_drift: int  # ledger total minus what the clients' ok replies imply
    attempts: int  # messages sent by the clients (all attempts)
    p50_ms: float
    p99_ms: float
    max_ms: float


def audit(
    operations: Sequence[Operation],
    results: Sequence[CallResult],
    applications: dict[str, int],
    ledger_total: int,
    opening_total: int,
) -> Audit:
    """Compare the client-side outcomes with the ledger's applications."""
    if len(operations) != len(results):
        raise ValueError("every planned operation needs exactly one result")
    counts = {outcome: 0 for outcome in Outcome}
    executions = duplicated = phantom = phantom_failed = lost = 0
    acknowledged = 0  # net money the ok replies account for
    for op, result in zip(operations, results, strict=True):
        applied = applications.get(op.request_id, 0)
        counts[result.outcome] += 1
        executions += applied
        duplicated += applied >= 2
        if result.outcome is Outcome.OK:
            lost += applied == 0
            acknowledged += op.signed_amount
        elif applied:
            phantom += 1
            phantom_failed += result.outcome is Outcome.FAILED
    latencies = sorted(r.latency * 1000 for r in results)
    return Audit(
        ops=len(operations),
        ok=counts[Outcome.OK],
        failed=counts[Outcome.FAILED],
        unknown=counts[Outcome.UNKNOWN],
        executions=executions,
        duplicated=duplicated,
        phantom=phantom,
        phantom_failed=phantom_failed,
        lost=lost,
        money_drift=ledger_total - opening_total - acknowledged,
        attempts=sum(r.attempts for r in results),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1] if latencies else 0.0,
    )
