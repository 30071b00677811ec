"""Turn crash-cell runs into typed records and the report: predictions, tables, guarantees.

Records are ``experiments.cell_record.BankRecord`` plus the crash columns
(``CrashRecord`` for the simulator, ``RealCrashRecord`` with the restart and
guarantee columns for real servers); ``render`` lays out the sim table, one
table per real transport, TCP next to UDP and the guarantees paragraph, as
printed and written by ``python -m experiments.crashes``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from experiments.analytic import Prediction, predict
from experiments.cell_record import (
    AUDIT_COLUMNS,
    AUDIT_LEGEND,
    CELL_INTRO,
    SEMANTICS_MEANING,
    BankRecord,
    bank_record,
)
from experiments.crash_runner import RealRun
from experiments.framework.experiment import Environment
from experiments.framework.tables import Column, legend, percentile, section, table
from experiments.retries_reading import exactly_once_drift
from experiments.runner import Cell, CellRun
from experiments.workload import ops_text
from services.programs.cli import RANDOM_POINT
from transports.endpoint import AFTER_APPLY, BEFORE_APPLY
from transports.faults import FaultSpec
from transports.semantics import Semantics


@dataclass(frozen=True, kw_only=True)
class CrashRecord(BankRecord):
    """A crash cell: the bank record plus the crash rate, point and count."""

    crash: float
    crash_point: str
    crashes: int


@dataclass(frozen=True, kw_only=True)
class RealCrashRecord(CrashRecord):
    """A real-server crash cell: restarts, integrity checks and broken guarantees."""

    crashes_before: int
    crashes_after: int
    restarts: int
    startup_ms: float
    restart_p50_ms: float | None
    restart_max_ms: float | None
    restart_ms: tuple[float, ...]  # JSON only
    integrity_checks: int
    integrity: str  # "ok" or "FAILED"
    unreconciled: int
    server_exit: int | None
    violations: str  # "; "-joined, empty when every guarantee held


def real_record(real: RealRun) -> RealCrashRecord:
    """The bank record plus the crash, restart and guarantee columns."""
    restarts_ms = sorted(s * 1000 for s in real.restart_seconds)
    return RealCrashRecord(
        **vars(bank_record(real.run)),
        crash=real.run.cell.faults.crash,
        crash_point=real.crash_point,
        crashes=len(real.crashes),
        crashes_before=sum(c.point == BEFORE_APPLY for c in real.crashes),
        crashes_after=sum(c.point == AFTER_APPLY for c in real.crashes),
        restarts=real.restarts,
        startup_ms=round(real.startup_seconds * 1000, 1),
        restart_p50_ms=round(statistics.median(restarts_ms), 1) if restarts_ms else None,
        restart_max_ms=round(restarts_ms[-1], 1) if restarts_ms else None,
        restart_ms=tuple(round(ms, 1) for ms in restarts_ms),
        integrity_checks=len(real.integrity),
        integrity="ok" if all(r == "ok" for r in real.integrity) else "FAILED",
        unreconciled=len(real.unreconciled),
        server_exit=real.exit_code,
        violations="; ".join(real.violations),
    )


def prediction_for(cell: Cell) -> Prediction | None:
    """The crash-only model of ``experiments.crashes``' docstring, or None with other faults."""
    if FaultSpec(crash=cell.faults.crash) != cell.faults:
        return None
    # A crash empties the reply cache: at-most-once retries run like at-least-once.
    model = cell.semantics
    if model is Semantics.AT_MOST_ONCE:
        model = Semantics.AT_LEAST_ONCE
    return predict(model.value, 0.0, cell.attempts_allowed, reply_loss=cell.faults.crash / 2)


def crash_record(run: CellRun) -> CrashRecord:
    """The bank record (crash model's prediction) plus the crash rate and crash count."""
    return CrashRecord(
        **vars(bank_record(run, prediction_for(run.cell))),
        crash=run.cell.faults.crash,
        crash_point=RANDOM_POINT,
        crashes=run.server_counters.get("crashes", 0),
    )


_SEMANTICS_CRASH: tuple[Column[CrashRecord], ...] = (
    Column("semantics", lambda r: r.semantics),
    Column("crash", lambda r: r.crash),
    Column("crashes", lambda r: r.crashes),
)


def table_of(records: Sequence[CrashRecord]) -> str:
    """The simulator's table: measured / predicted counts."""
    columns: list[Column[CrashRecord]] = [*_SEMANTICS_CRASH, *AUDIT_COLUMNS]
    return table(records, columns)


def real_table(records: Sequence[RealCrashRecord]) -> str:
    """One real transport's table: crashes (after apply), restarts, audit, integrity."""
    columns: list[Column[RealCrashRecord]] = [
        *_SEMANTICS_CRASH,
        Column("crashes after", lambda r: r.crashes_after),
        Column("restarts", lambda r: r.restarts),
        *AUDIT_COLUMNS,
        Column("integrity", lambda r: r.integrity),
    ]
    return table(records, columns)


_SIDE_BY_SIDE: tuple[tuple[str, Callable[[RealCrashRecord], object]], ...] = (
    ("crashes", lambda r: r.crashes), ("dup", lambda r: r.audit.duplicated),
    ("unknown", lambda r: r.audit.unknown), ("attempts", lambda r: r.audit.attempts),
    ("p99 ms", lambda r: r.audit.p99_ms), ("max ms", lambda r: r.audit.max_ms),
)  # fmt: skip


def side_by_side(records: Sequence[RealCrashRecord]) -> str:
    """TCP next to UDP, same semantics, crash rate and seed."""
    index = {(r.transport, r.semantics, r.crash): r for r in records}
    pairs = [
        (r, index[("udp", r.semantics, r.crash)])
        for r in records
        if r.transport == "tcp" and ("udp", r.semantics, r.crash) in index
    ]
    columns: list[Column[tuple[RealCrashRecord, RealCrashRecord]]] = [
        Column("semantics", lambda p: p[0].semantics),
        Column("crash", lambda p: p[0].crash),
    ]
    for what, value in _SIDE_BY_SIDE:
        columns += _pair_columns(what, value)
    return table(pairs, columns)


def _pair_columns(
    what: str, value: Callable[[RealCrashRecord], object]
) -> list[Column[tuple[RealCrashRecord, RealCrashRecord]]]:
    return [
        Column(f"{what} tcp", lambda p: value(p[0])),
        Column(f"{what} udp", lambda p: value(p[1])),
    ]


def _environment(env: Environment) -> str:
    return f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs"


def _other_faults(r: BankRecord) -> FaultSpec:
    """The record's faults without the crash rate, which each row states itself."""
    return dataclasses.replace(FaultSpec.parse(r.faults), crash=0.0)


def caption(records: Sequence[CrashRecord], env: Environment) -> str:
    r = records[0]
    others = _other_faults(r)
    return (
        f"{ops_text(r.audit.ops, r.clients)}, seed {r.seed}; "
        f"crash probability per request arrival as in each row (half before apply, half after), "
        f"other faults [{others}], policy {r.policy}, max attempts "
        f"{max(x.max_attempts for x in records)} (maybe: 1); {_environment(env)}. "
        "Cells read measured / predicted count ('!' = outside 4 sigma); latencies are "
        "virtual time; restarts are instantaneous."
    )


def real_caption(records: Sequence[RealCrashRecord], transport: str, env: Environment) -> str:
    r = records[0]
    others = _other_faults(r)
    restarts = sorted(ms for x in records for ms in x.restart_ms)
    point = "50/50 before/after apply" if r.crash_point == RANDOM_POINT else r.crash_point
    return (
        f"A real server process (services serve bank) under a supervisor; "
        f"{ops_text(r.audit.ops, r.clients)}, seed {r.seed}; crash probability per "
        f"executed deposit or withdrawal attempt as in each row, crash point "
        f"{point}, SIGKILL then restart on the "
        f"same ledger file: {len(restarts)} restarts, death to listening again p50 "
        f"{percentile(restarts, 50):.0f} ms, p99 {percentile(restarts, 99):.0f} ms, max "
        f"{restarts[-1] if restarts else 0:.0f} ms; other faults [{others}], policy "
        f"{r.policy}, max attempts {max(x.max_attempts for x in records)} (maybe: 1); "
        f"{_environment(env)}. "
        "Wall-clock latencies; no prediction (a crash also kills other clients' in-flight "
        "requests); integrity = SQLite integrity_check after every crash and at the end."
    )


def guarantees(records: Sequence[RealCrashRecord]) -> str:
    """One paragraph: do integrity, no-loss and exactly-once hold in every real cell?"""
    checks = sum(r.integrity_checks for r in records)
    crashes = sum(r.crashes for r in records)
    broken = [r for r in records if r.violations]

    def duplicated(semantics: str) -> int:
        return sum(r.audit.duplicated for r in records if r.semantics == semantics)

    lines = [
        f"- Guarantees over {len(records)} real cells, {crashes} crashes: "
        f"integrity_check ok in {checks - sum(r.integrity != 'ok' for r in records)}"
        f"/{checks} checks; acknowledged operations lost: {sum(r.audit.lost for r in records)}; "
        f"exactly-once duplicated: {duplicated('exactly-once')}; "
        "at-most-once duplicated (reply cache lost with the process): "
        f"{duplicated('at-most-once')}."
    ]
    lines += [
        f"- VIOLATION {r.transport} {r.semantics} crash={r.crash}: {r.violations}" for r in broken
    ]
    return "\n".join(lines)


def render(records: Sequence[CrashRecord], env: Environment) -> str:
    """Sim table, a table per real transport, TCP vs UDP (the guarantees are the reading)."""
    parts = []
    sim = [r for r in records if r.transport == "sim"]
    if sim:
        parts.append(section("sim: the simulator", table_of(sim), caption(sim, env)))
    real = [r for r in records if isinstance(r, RealCrashRecord)]
    for transport in ("tcp", "udp"):
        group = [r for r in real if r.transport == transport]
        if group:
            note = real_caption(group, transport, env)
            parts.append(section(f"{transport}: real server processes", real_table(group), note))
    if {r.transport for r in real} == {"tcp", "udp"}:
        parts.append(section("tcp vs udp", side_by_side(real), "The same seed and crash draws."))
    return "\n\n".join(parts)


def reading(records: Sequence[CrashRecord]) -> str:
    """Whether integrity, no-loss and exactly-once held in every real cell, and where
    exactly-once's drift comes from."""
    real = [r for r in records if isinstance(r, RealCrashRecord)]
    lines = [guarantees(real)] if real else []
    drift = exactly_once_drift(records)
    return "\n".join(lines + ([f"- {drift}"] if drift else []))


LEGEND = legend(
    CELL_INTRO,
    [
        ("semantics", SEMANTICS_MEANING),
        ("crash", "sim: probability that the server crashes at a request's arrival; real: "
         "per executed deposit or withdrawal"),
        ("crashes, crashes after", "crashes in the cell; of them, after the ledger commit "
         "(the reply is lost, the change kept)"),
        ("restarts", "server restarts by the supervisor"),
        *AUDIT_LEGEND,
        ("integrity", "SQLite integrity_check after every crash and at the end"),
        ("X tcp, X udp (side by side)", "that column of each transport"),
    ],
)  # fmt: skip
