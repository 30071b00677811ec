"""``python -m experiments.crashes``: server crashes x call semantics, on the simulator.

Role: show what a server crash does to each semantics' promise. Every cell is
an ``experiments.runner`` sim cell whose fault spec carries ``crash=c``: each
request arrival crashes the server with probability ``c``, half the time on
arrival (before apply) and half the time after the ledger change committed and
before the reply left (see ``transports.sim``). A crash empties the
at-most-once reply cache; the SQLite ledger and its idempotency keys survive.
The table has the audit columns of ``experiments.report`` plus the crash rate
and the number of crashes, and prints the records as JSON, CSV and Markdown
under results/.

Prediction (no other fault, no loss): an attempt's reply is lost exactly when
the server crashes after applying it, with probability ``r = c / 2``, and
every crash also empties the reply cache, so at-most-once retries re-execute
just as at-least-once ones do. That is ``experiments.analytic.predict`` with
request loss 0 and reply loss ``r``, with at-most-once predicted as
at-least-once. Cells with other faults get no prediction.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from experiments.analytic import Prediction, agrees, predict
from experiments.cli import Progress, choice, csv_list, environment, probability
from experiments.report import PREDICTED, Record, record
from experiments.runner import Cell, CellRun, run_cell
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
DEFAULT_CRASH = "0,0.01,0.02,0.05,0.1,0.2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.crashes",
        description="Measure duplicated, phantom and unknown bank operations when the server "
        "crashes (losing its reply cache, keeping its ledger), per call semantics.",
    )
    p.add_argument("--semantics", type=csv_list(choice(SEMANTICS)), default=",".join(SEMANTICS))
    p.add_argument(
        "--crash",
        type=csv_list(probability),
        default=DEFAULT_CRASH,
        help="crash probability per request arrival (one cell per value)",
    )
    p.add_argument("--loss", type=probability, default=0.0, help="message loss, every cell")
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms' (no crash= or loss=)",
    )
    p.add_argument("--ops", type=int, default=400, help="logical operations per cell")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per cell")
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument(
        "--policy",
        default="fixed:timeout=100ms",
        metavar="NAME[:k=v,...]",
        help=f"retry policy, one of {', '.join(POLICY_NAMES)}, with optional timeout=, base=, cap=",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--name", default="crashes", help="base name of the result files")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer ops and rates")
    p.add_argument("--no-progress", action="store_true")
    return p


def cells_from(args: argparse.Namespace) -> list[Cell]:
    if args.ops < 1 or args.clients < 1 or args.max_attempts < 1:
        raise ValueError("--ops, --clients and --max-attempts must be at least 1")
    base = FaultSpec.parse(args.faults)
    if base.crash or base.loss:
        raise ValueError("give crash rates with --crash and loss with --loss, not in --faults")
    policy = parse_policy(args.policy)
    return [
        Cell(
            transport="sim",
            semantics=Semantics(semantics),
            faults=dataclasses.replace(base, loss=args.loss, crash=crash),
            policy=policy,
            max_attempts=args.max_attempts,
            ops=args.ops,
            clients=min(args.clients, args.ops),
            seed=args.seed,
        )
        for semantics in args.semantics
        for crash in args.crash
    ]


def prediction_for(cell: Cell) -> Prediction | None:
    """The crash-only model of the module docstring, or None when other faults are on."""
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
    rec["crashes"] = run.server_counters.get("crashes", 0)
    prediction = prediction_for(run.cell)
    if prediction is not None:
        ops = run.cell.ops
        rec["predicted"] = {k: round(v, 6) for k, v in prediction.to_dict().items()}
        rec["agrees"] = {k: agrees(rec[k], ops, getattr(prediction, k)) for k in PREDICTED}
    return rec


def _cell(rec: Record, key: str) -> str:
    predicted = rec.get("predicted")
    if predicted is None:
        return str(rec[key])
    flag = "" if rec["agrees"][key] else " !"
    return f"{rec[key]} / {predicted[key] * rec['ops']:.1f}{flag}"


def table(records: Sequence[Record]) -> str:
    rows = [
        [
            r["semantics"],
            r["crash"],
            r["crashes"],
            _cell(r, "ok"),
            r["failed"],
            _cell(r, "unknown"),
            _cell(r, "duplicated"),
            _cell(r, "phantom"),
            r["lost"],
            r["money_drift"],
            r["executions"],
            r["attempts"],
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
        ]
        for r in records
    ]
    headers = [
        "semantics",
        "crash",
        "crashes",
        "ok",
        "failed",
        "unknown",
        "duplicated",
        "phantom",
        "lost",
        "drift",
        "execs",
        "attempts",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]
    return tabulate(rows, headers, floatfmt=".2f")  # fmt: skip


def caption(records: Sequence[Record], env: dict[str, Any]) -> str:
    r = records[0]
    others = dataclasses.replace(FaultSpec.parse(r["faults"]), crash=0.0)
    return (
        f"sim: {r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, "
        f"crash probability per request arrival per row (half before apply, half after), "
        f"other faults [{others}], policy {r['policy']}, max attempts "
        f"{max(x['max_attempts'] for x in records)} (maybe: 1); Python {env['python']} on "
        f"{env['platform']}, {env['cpus']} CPUs. Cells read measured / predicted count "
        "('!' = outside 4 sigma); latencies are virtual time."
    )


def render(records: Sequence[Record], env: dict[str, Any]) -> str:
    return f"## {caption(records, env)}\n\n{table(records)}"


def write_results(
    out: Path, name: str, records: Sequence[Record], params: dict[str, Any], env: dict[str, Any]
) -> list[Path]:
    """JSON (the shape of ``experiments.report.write_results``), CSV and Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{name}.json", out / f"{name}.csv", out / f"{name}.md"]
    document = {"parameters": params, "environment": env, "cells": list(records)}
    written[0].write_text(json.dumps(document, indent=1) + "\n")
    flat = [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in records]
    with written[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    written[2].write_text(
        f"# {name}\n\nCommand: `{env['argv']}`\n\n```\n{render(records, env)}\n```\n"
    )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.ops, args.crash = min(args.ops, 100), [0.0, 0.05, 0.2]
    try:
        cells = cells_from(args)
    except (ValueError, FaultSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = Progress(len(cells), enabled=not args.no_progress)
    records = []
    for cell in cells:
        records.append(crash_record(run_cell(cell)))
        progress.step(f"{cell.semantics.value} crash={cell.faults.crash}")
    env = environment()
    print(render(records, env))
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    written = write_results(args.out, args.name, records, params, env)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
