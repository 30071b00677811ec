"""Why a run breaks a property, in sentences: the operation, its executions, what
the client was told, the ledger rows, what the links and the server did."""

from __future__ import annotations

from experiments.audit import Audit
from experiments.search.bank import ScheduleRun
from experiments.search.properties import Property
from transports.call import CallResult, Outcome

# Link counters worth a word, in this order (FaultLink's event names).
_EVENTS = (
    ("drop", "dropped"),
    ("partition", "cut by the partition"),
    ("dup", "duplicated"),
    ("delay", "delayed"),
    ("retransmitted", "retransmitted by TCP"),
    ("fifo_hold", "held behind an earlier message"),
    ("absorbed_dup", "duplicates absorbed by TCP"),
    ("reset", "connection resets"),
)


def audit_line(a: Audit) -> str:
    """The audit's counts on one line."""
    return (
        f"ok {a.ok}, failed {a.failed}, unknown {a.unknown}; executions {a.executions} "
        f"of {a.ops} deposits, duplicated {a.duplicated}, phantom {a.phantom}, "
        f"lost {a.lost}, drift {a.money_drift:+d}; attempts {a.attempts}"
    )


def told(result: CallResult) -> str:
    """What the client was told, and after how many attempts."""
    attempts = f"{result.attempts} attempt{'s' * (result.attempts != 1)}"
    if result.outcome is Outcome.OK:
        assert result.reply is not None
        return f"ok (the reply to attempt {result.reply.attempt}, after {attempts})"
    if result.outcome is Outcome.FAILED:
        return f"failed: {result.error_code} (after {attempts})"
    return f"unknown: no reply after {attempts}, it may or may not have been applied"


def explain(run: ScheduleRun, prop: Property) -> list[str]:
    """Lines saying which operations break ``prop`` and what happened around them."""
    lines = []
    for op, result, applied in prop.culprits(run):
        times = "never" if applied == 0 else f"{applied} time{'s' * (applied != 1)}"
        lines.append(
            f"deposit {op.request_id} ({op.amount} into account {op.account}) was applied "
            f"{times}; its client was told {told(result)}"
        )
        for seq, _, account, kind, amount, after in run.applied(op.request_id):
            lines.append(
                f"  ledger row {seq}: {op.request_id} {kind} {amount} "
                f"account {account}, balance after {after}"
            )
    lines.append(f"audit: {audit_line(run.audit)}")
    lines.append("links: " + "; ".join(link_summary(run)))
    crashes = ", ".join(f"{point.value} apply of request #{k}" for k, point in run.crashes)
    lines.append(f"server: {run.arrivals} request arrivals; crashes: {crashes or 'none'}")
    return lines


def link_summary(run: ScheduleRun) -> list[str]:
    out = []
    for label, counts in run.links.items():
        # A message a partition cuts also counts as a drop (datagram) or a
        # retransmission (TCP): say it once, as the partition's.
        cut = counts.get("partition", 0)
        shown = {k: n - cut if k in _CUT_ALSO else n for k, n in counts.items()}
        words = [f"{counts.get('messages', 0)} messages"]
        words += [f"{shown[key]} {what}" for key, what in _EVENTS if shown.get(key, 0) > 0]
        out.append(f"{label} {', '.join(words)}")
    return out


_CUT_ALSO = frozenset({"drop", "retransmitted"})
