"""The typed record of one audited bank cell, its analytic prediction and its audit columns.

Shared by the experiments built on ``experiments.runner`` cells (retries, its
kernel backend, crashes): ``bank_record`` turns a ``CellRun`` into a
``BankRecord`` (the cell's settings, the audit, the wall-clock time and,
where a model's assumptions hold, the prediction and whether each count
agrees with it, else why there is none); ``AUDIT_COLUMNS`` are the audit's
table columns, the predicted ones reading ``measured / predicted``.

Two models: ``experiments.analytic`` for datagrams (udp, sim-udp) and for
TCP whose lost message resets the connection (``tcp=reset``), and
``experiments.tcp_prediction`` for TCP that retransmits (tcp, sim-tcp; the
fault layer's default ``tcp=retransmit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from experiments.analytic import Prediction, agrees, predict
from experiments.audit import Audit
from experiments.framework.records import FLATTEN, OMIT_NONE, Record
from experiments.framework.tables import Column
from experiments.runner import Cell, CellRun
from experiments.tcp_prediction import calls_per_client, predict_tcp
from transports.faults import FaultSpec, TcpRecovery
from transports.retry import OnTimeout

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
    timeout: float  # the policy's attempt timeout, seconds
    max_attempts: int
    clients: int
    seed: int
    audit: Audit = field(metadata=FLATTEN)
    seconds: float
    predicted: Prediction | None = field(default=None, metadata=OMIT_NONE)  # rounded
    agrees: Agreement | None = field(default=None, metadata=OMIT_NONE)
    no_prediction: str | None = field(default=None, metadata=OMIT_NONE)  # why, when none


#: The transports whose lost messages TCP retransmits (unless ``tcp=reset``).
TCP_TRANSPORTS = ("tcp", "sim-tcp")


def retransmits(cell: Cell) -> bool:
    """A TCP cell whose fault layer retransmits lost messages as TCP does (``tcp=retransmit``)."""
    return cell.transport in TCP_TRANSPORTS and cell.faults.tcp is TcpRecovery.RETRANSMIT


def model_prediction(cell: Cell) -> Prediction | str:
    """The prediction for ``cell``, or why there is none (see ANALYSIS.md)."""
    if not cell.faults.partition.is_zero:
        return "a partition: the models know only per-message faults"
    if retransmits(cell):
        return _tcp_prediction(cell)
    spec = cell.faults
    if spec.dup or spec.reorder or spec.corrupt or spec.ge_p or spec.reset or spec.crash:
        return "faults beyond independent loss and app_fail"
    return predict(cell.semantics.value, spec.loss, cell.attempts_allowed, app_fail=spec.app_fail)


def _tcp_prediction(cell: Cell) -> Prediction | str:
    spec = cell.faults
    absorbed = FaultSpec(
        loss=spec.loss, dup=spec.dup, reorder=spec.reorder, reorder_gap=spec.reorder_gap
    )
    if spec != absorbed:  # TCP absorbs duplicates and reordering
        return "TCP model: faults beyond loss"
    if spec.loss >= 1.0:
        return "TCP model: loss 1 never opens a connection"
    if cell.policy.on_timeout is OnTimeout.RECONNECT:
        return "TCP model: on-timeout=reconnect opens a connection per timeout"
    prediction = predict_tcp(
        cell.semantics.value,
        spec.loss,
        cell.attempts_allowed,
        cell.policy,
        calls_per_client(cell.ops, cell.clients),
    )
    return (
        "TCP model: random attempt times (jittered or adaptive policy)"
        if prediction is None
        else prediction
    )


def prediction_for(run: CellRun) -> Prediction | None:
    """The prediction, where a model's assumptions hold (see ANALYSIS.md)."""
    found = model_prediction(run.cell)
    return None if isinstance(found, str) else found


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
    reason = None
    if prediction is None:
        found = model_prediction(cell)
        prediction, reason = (None, found) if isinstance(found, str) else (found, None)
    predicted, agreement = (None, None) if prediction is None else judged(run.audit, prediction)
    return BankRecord(
        transport=cell.transport,
        semantics=cell.semantics.value,
        loss=cell.faults.loss,
        faults=cell.faults.to_spec(),
        policy=cell.policy.describe(),
        timeout=cell.policy.timeout,
        max_attempts=cell.attempts_allowed,
        clients=cell.clients,
        seed=cell.seed,
        audit=run.audit,
        seconds=round(run.seconds, 3),
        predicted=predicted,
        agrees=agreement,
        no_prediction=reason,
    )


def measured_vs_predicted(rec: BankRecord, key: str) -> str:
    """``measured / predicted`` count, ``!`` when outside 4 standard errors."""
    measured = getattr(rec.audit, key)
    if rec.predicted is None or rec.agrees is None:
        return str(measured)
    flag = "" if getattr(rec.agrees, key) else " !"
    return f"{measured} / {getattr(rec.predicted, key) * rec.audit.ops:.1f}{flag}"


def drift_text(drift: int, duplicated: int | None) -> str:
    """``-5068 (0)``: a drift and, in brackets, its part from second executions."""
    if duplicated is None:  # a result file from before the audit split the drift
        return str(drift)
    return "0" if drift == duplicated == 0 else f"{drift} ({duplicated})"


def _audit_column(key: str, header: str) -> Column[BankRecord]:
    if key in PREDICTED:
        return Column(header, lambda r: measured_vs_predicted(r, key))
    if key == "money_drift":
        return Column(header, lambda r: drift_text(r.audit.money_drift, r.audit.drift_duplicated))
    return Column(header, lambda r: getattr(r.audit, key))


#: The audit's columns in the retries experiment's order (after semantics and loss).
AUDIT_COLUMNS: tuple[Column[BankRecord], ...] = tuple(
    _audit_column(key, header)
    for key, header in (
        ("ok", "ok"), ("failed", "failed"), ("unknown", "unknown"),
        ("duplicated", "duplicated"), ("phantom", "phantom"), ("lost", "lost"),
        ("money_drift", "drift (of it dup)"), ("executions", "execs"), ("attempts", "attempts"),
        ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
    )
)  # fmt: skip

#: The legend of a bank cell's table: what a row is, then the audit's columns.
CELL_INTRO = (
    "Each row is one cell: a fresh SQLite ledger, then every client makes its deposits "
    "and withdrawals (each a logical operation with its own request id, retried under the "
    "row's semantics); afterwards the audit reads the ledger and compares, operation by "
    "operation, how often it was applied with what the client was told. Counts are "
    "operations of the cell; money is in ledger units (integers; each operation moves 1 "
    "to 1000)."
)
SEMANTICS_MEANING = (
    "`maybe`: one attempt; `at-least-once`: retries, the server runs every copy; "
    "`at-most-once`: retries, the server answers a repeat from its in-memory reply cache; "
    "`exactly-once`: retries, the request id is stored with the ledger change"
)
AUDIT_LEGEND: tuple[tuple[str, str], ...] = (
    ("ok / failed / unknown", "what the client was told: applied; a definite error "
     "(nothing applied); no reply after its last attempt (it may or may not have been "
     "applied)"),
    ("duplicated (dup)", "operations the ledger applied twice or more"),
    ("phantom", "operations applied although the client saw failed or unknown"),
    ("lost", "the client saw ok but the ledger never applied it (must be 0)"),
    ("drift (of it dup)", "ledger total minus what the ok replies account for, in ledger "
     "units; in brackets the part moved by second executions (money really created or "
     "taken twice). The rest is operations applied once whose client saw unknown or "
     "failed: the client does not know of it, but no money was created"),
    ("execs, attempts", "ledger applications, and messages the clients sent, in total"),
    ("p50 / p99 / max ms", "latency of a logical operation, all its attempts included "
     "(sim: virtual time)"),
    ("`a / b !`", "measured `a`, predicted `b` (mean count); `!`: more than 4 standard "
     "errors apart"),
)  # fmt: skip
