"""The audit: what the ledger applied against what each client was told.

Like Jepsen's bank checker, every logical operation ends ``ok``, ``failed``
or ``unknown``; the audit reads the real ledger afterwards and counts, per
operation, how many times it was applied.

Money is counted in the ledger's unit (amounts are integers, 1 to 1000 per
operation here). The drift is the money the ledger moved that no ``ok``
reply accounts for; it has two honest sources and one bug: executions beyond
an operation's first (duplicates: money really created or taken twice),
operations applied once whose client saw ``unknown`` or ``failed`` (the
client does not know; no money is created), and ``ok`` operations the ledger
never applied (lost, must be 0). The audit keeps the first two apart, and
counts deposits and withdrawals separately.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from experiments.framework.tables import percentile
from experiments.workload import Operation
from transports.call import CallResult, Outcome

__all__ = ["Audit", "KindAudit", "audit", "percentile"]


@dataclass(frozen=True)
class KindAudit:
    """The audit of one kind of operation: deposits, or withdrawals."""

    ops: int
    ok: int
    failed: int
    unknown: int
    duplicated: int
    phantom: int
    lost: int
    drift: int  # ledger units: money this kind moved that no ok reply accounts for
    drift_duplicated: int  # the part moved by executions beyond an operation's first


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
    money_drift: int  # ledger units: ledger total minus what the clients' ok replies imply
    attempts: int  # messages sent by the clients (all attempts)
    p50_ms: float
    p99_ms: float
    max_ms: float
    # The drift in parts (None in result files written before they existed):
    # money_drift = drift_duplicated + drift_unacknowledged - (the amounts of lost operations).
    drift_duplicated: int | None = None  # moved by executions beyond an operation's first
    drift_unacknowledged: int | None = None  # applied once although the client saw failed/unknown
    deposits: KindAudit | None = None
    withdrawals: KindAudit | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Audit:
        """The audit as a result file stores it (per-kind audits as objects)."""
        values = dict(data)
        for kind in ("deposits", "withdrawals"):
            if isinstance(values.get(kind), Mapping):
                values[kind] = KindAudit(**values[kind])
        return cls(**values)


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
    drift_duplicated = drift_unacknowledged = 0
    for op, result in zip(operations, results, strict=True):
        applied = applications.get(op.request_id, 0)
        counts[result.outcome] += 1
        executions += applied
        duplicated += applied >= 2
        drift_duplicated += op.signed_amount * max(applied - 1, 0)
        if result.outcome is Outcome.OK:
            lost += applied == 0
            acknowledged += op.signed_amount
        elif applied:
            phantom += 1
            phantom_failed += result.outcome is Outcome.FAILED
            drift_unacknowledged += op.signed_amount
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
        drift_duplicated=drift_duplicated,
        drift_unacknowledged=drift_unacknowledged,
        deposits=_kind_audit("deposit", operations, results, applications),
        withdrawals=_kind_audit("withdraw", operations, results, applications),
    )


def _kind_audit(
    kind: str,
    operations: Sequence[Operation],
    results: Sequence[CallResult],
    applications: dict[str, int],
) -> KindAudit:
    """The counts of the operations of one ``kind``; their drift from the ledger's rows."""
    pairs = [(op, r) for op, r in zip(operations, results, strict=True) if op.kind == kind]
    applied = [applications.get(op.request_id, 0) for op, _ in pairs]
    outcomes = [r.outcome for _, r in pairs]
    ok = [outcome is Outcome.OK for outcome in outcomes]
    return KindAudit(
        ops=len(pairs),
        ok=sum(ok),
        failed=outcomes.count(Outcome.FAILED),
        unknown=outcomes.count(Outcome.UNKNOWN),
        duplicated=sum(n >= 2 for n in applied),
        phantom=sum(n >= 1 and not k for n, k in zip(applied, ok, strict=True)),
        lost=sum(n == 0 and k for n, k in zip(applied, ok, strict=True)),
        drift=sum(
            op.signed_amount * (n - k) for (op, _), n, k in zip(pairs, applied, ok, strict=True)
        ),
        drift_duplicated=sum(
            op.signed_amount * max(n - 1, 0) for (op, _), n in zip(pairs, applied, strict=True)
        ),
    )
