"""``python -m experiments.crashes``: server crashes x call semantics, simulated and real.

Role: show what a server crash does to each semantics' promise, on the
simulator and on real TCP and UDP servers whose process really dies. Tables
carry the audit columns of ``experiments.report`` plus the crash rate and the
number of crashes; the records go to results/ as JSON, CSV and Markdown.

Simulator (``--transports sim``): every cell is an ``experiments.runner`` sim
cell whose fault spec carries ``crash=c``: each request arrival crashes the
server with probability ``c``, half the time on arrival (before apply) and
half the time after the ledger change committed and before the reply left
(see ``transports.sim``). A crash empties the at-most-once reply cache; the
SQLite ledger and its idempotency keys survive; the restart is instantaneous.

Prediction (sim, no other fault, no loss): an attempt's reply is lost exactly
when the server crashes after applying it, with probability ``r = c / 2``, and
every crash also empties the reply cache, so at-most-once retries re-execute
just as at-least-once ones do. That is ``experiments.analytic.predict`` with
request loss 0 and reply loss ``r``, with at-most-once predicted as
at-least-once. Cells with other faults get no prediction.

Real servers (``--transports tcp,udp``): ``python -m services serve bank``
runs under ``experiments.supervisor`` on a fixed port and ledger file with
``crash=c``: at a fraction ``c`` of the deposit and withdrawal attempts it
executes (a seeded draw per request id and attempt), the process SIGKILLs
itself at ``--crash-point`` (before apply, or after the commit and before the
reply leaves, or either 50/50). The supervisor checks
the ledger file's integrity while the process is dead, then restarts it.
Clients reconnect and retry with ``--real-policy``. Afterwards the ledger is
audited as in the retries experiment and three guarantees are checked:
``integrity_check`` ok after every crash and at the end (and every balance
reconciles with its ledger rows), no acknowledged operation lost, nothing
duplicated under exactly-once. A violation makes the exit status 1. Real
cells get no prediction: a crash also kills the requests other clients had in
flight, which the one-request model above does not count.

This module is the command line and the choice of cells; a real cell runs in
``experiments.crash_runner``, the records and tables come from
``experiments.crash_report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.cli import Progress, choice, csv_list, environment, probability
from experiments.crash_report import crash_record, real_record, render
from experiments.crash_runner import RealCell, RealRun, run_real_cell
from experiments.report import write_results
from experiments.runner import Cell, run_cell
from services.programs.cli import CRASH_POINTS, RANDOM_POINT
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

__all__ = ["RealCell", "RealRun", "build_parser", "main", "run_real_cell"]

SEMANTICS = tuple(s.value for s in Semantics)
TRANSPORTS = ("sim", "tcp", "udp")
DEFAULT_CRASH = "0,0.01,0.02,0.05,0.1,0.2"
DEFAULT_REAL_CRASH = "0.05,0.1"
# Rides out a restart (~0.2-0.4 s): a TCP client sees the refused connect at
# once and backs off 50, 100, 200, 400, 500 ms ...; a UDP one waits 250 ms
# per attempt. 10 attempts span more than 3 s either way.
DEFAULT_REAL_POLICY = "expo:timeout=250ms,base=50ms,cap=500ms"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.crashes",
        description="Measure duplicated, phantom and unknown bank operations when the server "
        "crashes (losing its reply cache, keeping its ledger), per call semantics, on the "
        "simulator and on real TCP/UDP server processes killed with SIGKILL and restarted.",
    )
    p.add_argument("--transports", type=csv_list(choice(TRANSPORTS)), default=",".join(TRANSPORTS))
    p.add_argument("--semantics", type=csv_list(choice(SEMANTICS)), default=",".join(SEMANTICS))
    p.add_argument(
        "--crash",
        type=csv_list(probability),
        default=DEFAULT_CRASH,
        help="sim: crash probability per request arrival (one cell per value)",
    )
    p.add_argument("--loss", type=probability, default=0.0, help="message loss, every cell")
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms' (no crash= or loss=)",
    )
    p.add_argument("--ops", type=int, default=400, help="sim: logical operations per cell")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per cell")
    p.add_argument("--max-attempts", type=int, default=5, help="sim")
    p.add_argument(
        "--policy",
        default="fixed:timeout=100ms",
        metavar="NAME[:k=v,...]",
        help=f"sim: retry policy, one of {', '.join(POLICY_NAMES)}, with optional timeout=, "
        "base=, cap=",
    )
    real = p.add_argument_group("real servers (tcp, udp)")
    real.add_argument(
        "--real-crash",
        type=csv_list(probability),
        default=DEFAULT_REAL_CRASH,
        help="crash probability per executed deposit/withdrawal (one cell per value)",
    )
    real.add_argument("--real-ops", type=int, default=100, help="logical operations per cell")
    real.add_argument("--real-policy", default=DEFAULT_REAL_POLICY, metavar="NAME[:k=v,...]")
    real.add_argument("--real-max-attempts", type=int, default=10)
    real.add_argument(
        "--crash-point",
        choices=CRASH_POINTS,
        default=RANDOM_POINT,
        help="where the server dies (random: 50/50; the sim always draws 50/50)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--name", default="crashes", help="base name of the result files")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer ops and rates")
    p.add_argument("--no-progress", action="store_true")
    return p


def _base_faults(args: argparse.Namespace) -> FaultSpec:
    if min(args.ops, args.real_ops, args.clients, args.max_attempts, args.real_max_attempts) < 1:
        raise ValueError("operation, client and attempt counts must be at least 1")
    base = FaultSpec.parse(args.faults)
    if base.crash or base.loss:
        raise ValueError("give crash rates with --crash and loss with --loss, not in --faults")
    return dataclasses.replace(base, loss=args.loss)


def _cells(
    args: argparse.Namespace,
    transport: str,
    rates: Sequence[float],
    policy: str,
    attempts: int,
    ops: int,
) -> list[Cell]:
    base = _base_faults(args)
    retry = parse_policy(policy)
    clients = min(args.clients, ops)
    return [
        Cell(
            transport,
            Semantics(s),
            dataclasses.replace(base, crash=c),
            retry,
            attempts,
            ops,
            clients,
            args.seed,
        )
        for s in args.semantics
        for c in rates
    ]


def cells_from(args: argparse.Namespace) -> list[Cell]:
    """The simulator cells (none unless ``sim`` is among ``--transports``)."""
    _base_faults(args)  # validate whichever cells run
    if "sim" not in args.transports:
        return []
    return _cells(args, "sim", args.crash, args.policy, args.max_attempts, args.ops)


def real_cells_from(args: argparse.Namespace) -> list[RealCell]:
    """The real-server cells: transports x semantics x ``--real-crash``."""
    return [
        RealCell(cell, args.crash_point)
        for transport in args.transports
        if transport != "sim"
        for cell in _cells(
            args,
            transport,
            args.real_crash,
            args.real_policy,
            args.real_max_attempts,
            args.real_ops,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.ops, args.crash = min(args.ops, 100), [0.0, 0.05, 0.2]
        args.real_ops, args.real_crash = min(args.real_ops, 60), [0.1]
    try:
        cells = cells_from(args)
        real_cells = real_cells_from(args)
    except (ValueError, FaultSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = Progress(len(cells) + len(real_cells), enabled=not args.no_progress)
    records = []
    for cell in cells:
        records.append(crash_record(run_cell(cell)))
        progress.step(f"sim {cell.semantics.value} crash={cell.faults.crash}")
    violations = 0
    for real in real_cells:
        result = run_real_cell(real)
        violations += bool(result.violations)
        records.append(real_record(result))
        progress.step(
            f"{real.cell.transport} {real.cell.semantics.value} crash={real.cell.faults.crash}"
        )
    env = environment()
    print(render(records, env))
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    written = write_results(
        args.out, args.name, records, params, env, render_tables=render, plotter=None
    )
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
