"""The typed record of one audited bank cell, its analytic prediction and its audit columns.

Shared by the experiments built on ``experiments.runner`` cells (retries, its
kernel backend, crashes): ``bank_record`` turns a ``CellRun`` into a
``BankRecord`` (the cell's settings, the audit, the wall-clock time and,
where the model's assumptions hold, the prediction and whether each count
agrees with it); ``AUDIT_COLUMNS`` are the audit's table columns, the
predicted ones reading ``measured / predicted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.analytic import Prediction, agrees, predict
from experiments.audit import Audit
from experiments.framework.records import FLATTEN, OMIT_NONE, Record
from experiments.framework.tables import Column
from experiments.runner import CellRun

PREDICTED = ("ok", "unknown", "duplicated", "phantom")


@dataclass(frozen=True)
class Agreement:
    """Whether each predicted count lies within 4 standard errors of the prediction."""

    ok: bool
    unknown: bool
    duplicated: bool
    phantom: bool


@dataclass(frozen=True, kw_only=True)
class BankRecord(Record):
    """One audited cell: what ran, what the audit found, and the prediction if any."""

    transport: str
    semantics: str
    loss: float
    faults: str
    policy: str
    max_attempts: int
    clients: int
    seed: int
    audit: Audit = field(metadata=FLATTEN)
    seconds: float
    predicted: Prediction | None = field(default=None, metadata=OMIT_NONE)  # rounded
    agrees: Agreement | None = field(default=None, metadata=OMIT_NONE)


def prediction_for(run: CellRun) -> Prediction | None:
    """The analytic prediction, where the model's assumptions hold (see ANALYSIS.md)."""
    spec = run.cell.faults
    if spec.dup or spec.reorder or spec.corrupt or spec.ge_p or spec.reset or spec.crash:
        return None
    return predict(
        run.cell.semantics.value, spec.loss, run.cell.attempts_allowed, app_fail=spec.app_fail
    )


def judged(audit: Audit, prediction: Prediction) -> tuple[Prediction, Agreement]:
    """The prediction as written (rounded) and whether each count agrees with it."""
    rounded = Prediction(**{k: round(v, 6) for k, v in prediction.to_dict().items()})
    agreement = Agreement(
        **{k: agrees(getattr(audit, k), audit.ops, getattr(prediction, k)) for k in PREDICTED}
    )
    return rounded, agreement


def bank_record(run: CellRun, prediction: Prediction | None = None) -> BankRecord:
    """The record of ``run``; ``prediction`` defaults to ``prediction_for(run)``.

    Records with more columns extend it: ``Kind(**vars(bank_record(run)), ...)``.
    """
    cell = run.cell
    if prediction is None:
        prediction = prediction_for(run)
    predicted, agreement = (None, None) if prediction is None else judged(run.audit, prediction)
    return BankRecord(
        transport=cell.transport,
        semantics=cell.semantics.value,
        loss=cell.faults.loss,
        faults=cell.faults.to_spec(),
        policy=cell.policy.describe(),
        max_attempts=cell.attempts_allowed,
        clients=cell.clients,
        seed=cell.seed,
        audit=run.audit,
        seconds=round(run.seconds, 3),
        predicted=predicted,
        agrees=agreement,
    )


def measured_vs_predicted(rec: BankRecord, key: str) -> str:
    """``measured / predicted`` count, ``!`` when outside 4 standard errors."""
    measured = getattr(rec.audit, key)
    if rec.predicted is None or rec.agrees is None:
        return str(measured)
    flag = "" if getattr(rec.agrees, key) else " !"
    return f"{measured} / {getattr(rec.predicted, key) * rec.audit.ops:.1f}{flag}"


def _audit_column(key: str, header: str) -> Column[BankRecord]:
    if key in PREDICTED:
        return Column(header, lambda r: measured_vs_predicted(r, key))
    return Column(header, lambda r: getattr(r.audit, key))


#: The audit's columns in the retries experiment's order (after semantics and loss).
AUDIT_COLUMNS: tuple[Column[BankRecord], ...] = tuple(
    _audit_column(key, header)
    for key, header in (
        ("ok", "ok"), ("failed", "failed"), ("unknown", "unknown"),
        ("duplicated", "duplicated"), ("phantom", "phantom"), ("lost", "lost"),
        ("money_drift", "drift"), ("executions", "execs"), ("attempts", "attempts"),
        ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
    )
)  # fmt: skip
