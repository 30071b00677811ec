"""Turn crash-cell runs into records and the report: predictions, tables, captions, guarantees.

Records are ``experiments.report.record`` plus the crash columns; ``render``
lays out the sim table, one table per real transport, TCP next to UDP and the
guarantees paragraph, as printed and written by ``python -m experiments.crashes``.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate

from experiments.analytic import Prediction, agrees, predict
from experiments.audit import percentile
from experiments.crash_runner import RealRun
from experiments.report import PREDICTED, Record, measured_vs_predicted, record
from experiments.runner import Cell, CellRun
from services.programs.cli import RANDOM_POINT
from transports.endpoint import AFTER_APPLY, BEFORE_APPLY
from transports.faults import FaultSpec
from transports.semantics import Semantics


def real_record(real: RealRun) -> Record:
    """``experiments.report.record`` plus the crash, restart and guarantee columns."""
    rec = record(real.run)
    restarts_ms = sorted(s * 1000 for s in real.restart_seconds)
    rec.update(
        crash=real.run.cell.faults.crash,
        crash_point=real.crash_point,
        crashes=len(real.crashes),
        crashes_before=sum(c.point == BEFORE_APPLY for c in real.crashes),
        crashes_after=sum(c.point == AFTER_APPLY for c in real.crashes),
        restarts=real.restarts,
        startup_ms=round(real.startup_seconds * 1000, 1),
        restart_p50_ms=round(statistics.median(restarts_ms), 1) if restarts_ms else None,
        restart_max_ms=round(restarts_ms[-1], 1) if restarts_ms else None,
        restart_ms=[round(ms, 1) for ms in restarts_ms],  # JSON only
        integrity_checks=len(real.integrity),
        integrity="ok" if all(r == "ok" for r in real.integrity) else "FAILED",
        unreconciled=len(real.unreconciled),
        server_exit=real.exit_code,
        violations="; ".join(real.violations),
    )
    return rec


def prediction_for(cell: Cell) -> Prediction | None:
    """The crash-only model of ``experiments.crashes``' docstring, or None with other faults."""
    if FaultSpec(crash=cell.faults.crash) != cell.faults:
        return None
    # A crash empties the reply cache: at-most-once retries run like at-least-once.
    model = cell.semantics
    if model is Semantics.AT_MOST_ONCE:
        model = Semantics.AT_LEAST_ONCE
    return predict(model.value, 0.0, cell.attempts_allowed, reply_loss=cell.faults.crash / 2)


def crash_record(run: CellRun) -> Record:
    """``experiments.report.record`` plus the crash rate, crash count and prediction."""
    rec = record(run)
    rec["crash"] = run.cell.faults.crash
    rec["crash_point"] = RANDOM_POINT
    rec["crashes"] = run.server_counters.get("crashes", 0)
    prediction = prediction_for(run.cell)
    if prediction is not None:
        ops = run.cell.ops
        rec["predicted"] = {k: round(v, 6) for k, v in prediction.to_dict().items()}
        rec["agrees"] = {k: agrees(rec[k], ops, getattr(prediction, k)) for k in PREDICTED}
    return rec


# The audit columns of the retries experiment, in its order.
_AUDIT_KEYS = [
    "ok",
    "failed",
    "unknown",
    "duplicated",
    "phantom",
    "lost",
    "money_drift",
    "executions",
    "attempts",
    "p50_ms",
    "p99_ms",
    "max_ms",
]
_HEADER = {"money_drift": "drift", "executions": "execs"}


def _headers(keys: Sequence[str]) -> list[str]:
    return [_HEADER.get(k, k.replace("_ms", " ms").replace("_", " ")) for k in keys]


def _row(r: Record, keys: Sequence[str]) -> list[Any]:
    return [measured_vs_predicted(r, k) if k in PREDICTED else r[k] for k in keys]


def table(records: Sequence[Record]) -> str:
    """The simulator's table: measured / predicted counts."""
    keys = ["semantics", "crash", "crashes", *_AUDIT_KEYS]
    return tabulate([_row(r, keys) for r in records], _headers(keys), floatfmt=".2f")


def real_table(records: Sequence[Record]) -> str:
    """One real transport's table: crashes (after apply), restarts, audit, integrity."""
    keys = ["semantics", "crash", "crashes", "crashes_after", "restarts", *_AUDIT_KEYS]
    keys.append("integrity")
    return tabulate([_row(r, keys) for r in records], _headers(keys), floatfmt=".2f")


def side_by_side(records: Sequence[Record]) -> str:
    """TCP next to UDP, same semantics, crash rate and seed."""
    index = {(r["transport"], r["semantics"], r["crash"]): r for r in records}
    rows = []
    for r in records:
        o = index.get(("udp", r["semantics"], r["crash"]))
        if r["transport"] != "tcp" or o is None:
            continue
        rows.append(
            [r["semantics"], r["crash"]]
            + [
                x
                for key in ("crashes", "duplicated", "unknown", "attempts", "p99_ms", "max_ms")
                for x in (r[key], o[key])
            ]
        )
    headers = ["semantics", "crash"] + [
        f"{what} {t}"
        for what in ("crashes", "dup", "unknown", "attempts", "p99 ms", "max ms")
        for t in ("tcp", "udp")
    ]
    return tabulate(rows, headers, floatfmt=".2f")


def _environment(env: dict[str, Any]) -> str:
    return f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs"


def _other_faults(r: Record) -> FaultSpec:
    """The record's faults without the crash rate, which each row states itself."""
    return dataclasses.replace(FaultSpec.parse(r["faults"]), crash=0.0)


def caption(records: Sequence[Record], env: dict[str, Any]) -> str:
    r = records[0]
    others = _other_faults(r)
    return (
        f"sim: {r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, "
        f"crash probability per request arrival per row (half before apply, half after), "
        f"other faults [{others}], policy {r['policy']}, max attempts "
        f"{max(x['max_attempts'] for x in records)} (maybe: 1); {_environment(env)}. "
        "Cells read measured / predicted count ('!' = outside 4 sigma); latencies are "
        "virtual time; restarts are instantaneous."
    )


def real_caption(records: Sequence[Record], transport: str, env: dict[str, Any]) -> str:
    r = records[0]
    others = _other_faults(r)
    restarts = sorted(ms for x in records for ms in x["restart_ms"])
    point = r["crash_point"]
    point = "50/50 before/after apply" if point == RANDOM_POINT else point
    return (
        f"{transport}: real server process (services serve bank) under a supervisor, "
        f"{r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, crash "
        f"probability per executed deposit/withdrawal attempt per row, crash point "
        f"{point}, SIGKILL then restart on the "
        f"same ledger file: {len(restarts)} restarts, death to listening again p50 "
        f"{percentile(restarts, 50):.0f} ms, p99 {percentile(restarts, 99):.0f} ms, max "
        f"{restarts[-1] if restarts else 0:.0f} ms; other faults [{others}], policy "
        f"{r['policy']}, max attempts {max(x['max_attempts'] for x in records)} (maybe: 1); "
        f"{_environment(env)}. "
        "Wall-clock latencies; no prediction (a crash also kills other clients' in-flight "
        "requests); integrity = SQLite integrity_check after every crash and at the end."
    )


def guarantees(records: Sequence[Record]) -> str:
    """One paragraph: do integrity, no-loss and exactly-once hold in every real cell?"""
    checks = sum(r["integrity_checks"] for r in records)
    crashes = sum(r["crashes"] for r in records)
    broken = [r for r in records if r["violations"]]
    lines = [
        f"Guarantees over {len(records)} real cells, {crashes} crashes: "
        f"integrity_check ok in {checks - sum(r['integrity'] != 'ok' for r in records)}"
        f"/{checks} checks; acknowledged operations lost: {sum(r['lost'] for r in records)}; "
        "exactly-once duplicated: "
        f"{sum(r['duplicated'] for r in records if r['semantics'] == 'exactly-once')}; "
        "at-most-once duplicated (reply cache lost with the process): "
        f"{sum(r['duplicated'] for r in records if r['semantics'] == 'at-most-once')}."
    ]
    lines += [
        f"VIOLATION {r['transport']} {r['semantics']} crash={r['crash']}: {r['violations']}"
        for r in broken
    ]
    return "\n".join(lines)


def render(records: Sequence[Record], env: dict[str, Any]) -> str:
    """Sim table, a table per real transport, TCP vs UDP, then the guarantees."""
    parts = []
    sim = [r for r in records if r["transport"] == "sim"]
    if sim:
        parts.append(f"## {caption(sim, env)}\n\n{table(sim)}")
    real = [r for r in records if r["transport"] != "sim"]
    for transport in ("tcp", "udp"):
        group = [r for r in real if r["transport"] == transport]
        if group:
            parts.append(f"## {real_caption(group, transport, env)}\n\n{real_table(group)}")
    if {r["transport"] for r in real} == {"tcp", "udp"}:
        parts.append(f"## TCP vs UDP, same seed and crash draws\n\n{side_by_side(real)}")
    if real:
        parts.append(f"## {guarantees(real)}")
    return "\n\n".join(parts)
