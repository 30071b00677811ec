"""``python -m experiments.retries``: non-idempotent bank operations under retries.

Sweeps transports x semantics x loss (plus any other faults), runs each cell,
audits the ledger against what every client was told, prints one table per
transport and a TCP-vs-UDP table, and writes results/retries.{json,csv,md,png}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from experiments.cli import Progress, choice, csv_list, environment, probability
from experiments.report import record, render, write_results
from experiments.runner import ALL_TRANSPORTS, Cell, CellRun, run_cell
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
DEFAULT_LOSS = "0,0.01,0.05,0.1,0.2,0.3"
#: Cells at once: they mostly wait out retry timeouts, so even a 2-CPU machine
#: runs three side by side without slowing one another down much.
DEFAULT_JOBS = min(3, os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.retries",
        description="Measure duplicates, lost and unknown operations of bank deposits and "
        "withdrawals under loss and retries, per transport and call semantics.",
    )
    p.add_argument("--transports", type=csv_list(choice(ALL_TRANSPORTS)), default="tcp,udp,sim")
    p.add_argument("--semantics", type=csv_list(choice(SEMANTICS)), default=",".join(SEMANTICS))
    p.add_argument(
        "--loss",
        type=csv_list(probability),
        default=DEFAULT_LOSS,
        help="independent loss of each message, each direction (one cell per value)",
    )
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms,app_fail=0.1'",
    )
    p.add_argument("--ops", type=int, default=400, help="logical operations per cell")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per cell")
    p.add_argument("--max-attempts", type=int, default=5)
    p.add_argument(
        "--policy",
        default="fixed:timeout=100ms",
        metavar="NAME[:k=v,...]",
        help=f"retry policy, one of {', '.join(POLICY_NAMES)}, with optional "
        "timeout=, base=, cap= (e.g. expo-full:timeout=20ms,cap=200ms)",
    )
    p.add_argument(
        "--fault-backend",
        choices=("in-process", "kernel"),
        default="in-process",
        help="kernel: packet loss by the kernel between two network namespaces "
        "(tcp and udp only; root, Linux; see transports/netns/)",
    )
    p.add_argument("--rate", metavar="RATE", help="kernel backend: tc tbf rate limit, e.g. 10mbit")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--name", default="retries", help="base name of the result files")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer ops and losses")
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help="cells run at once, each in its own process (1: one after another)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p  # fmt: skip


def cells_from(args: argparse.Namespace) -> list[Cell]:
    if args.ops < 1 or args.clients < 1 or args.max_attempts < 1:
        raise ValueError("--ops, --clients and --max-attempts must be at least 1")
    base = FaultSpec.parse(args.faults)
    if base.loss:
        raise ValueError("give loss with --loss, not inside --faults")
    policy = parse_policy(args.policy)
    return [
        Cell(
            transport=transport,
            semantics=Semantics(semantics),
            faults=base.with_loss(loss),
            policy=policy,
            max_attempts=args.max_attempts,
            ops=args.ops,
            clients=min(args.clients, args.ops),
            seed=args.seed,
        )
        for transport in args.transports
        for semantics in args.semantics
        for loss in args.loss
    ]


def _cost(cell: Cell) -> tuple[int, float]:
    """Rough wall-clock rank: real transports wait out timeouts, UDP most, sim least."""
    return (
        ALL_TRANSPORTS.index(cell.transport) if cell.transport != "udp" else -1,
        -cell.faults.loss,
    )


def run_cells(cells: list[Cell], jobs: int, progress: Progress) -> list[CellRun]:
    """Run every cell, ``jobs`` at a time in worker processes; results in ``cells`` order.

    Cells share nothing (each has its own ledger, server, port and seeded
    links), so running them side by side changes no count; the slowest
    (UDP, high loss: mostly waiting out timeouts) start first.
    """

    def label(cell: Cell) -> str:
        return f"{cell.transport} {cell.semantics.value} loss={cell.faults.loss}"

    if jobs == 1 or len(cells) == 1:
        runs = []
        for cell in cells:
            runs.append(run_cell(cell))
            progress.step(label(cell))
        return runs
    order = sorted(range(len(cells)), key=lambda i: _cost(cells[i]))
    results: dict[int, CellRun] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(cells)), mp_context=context) as pool:
        futures = {pool.submit(run_cell, cells[i]): i for i in order}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            progress.step(label(cells[index]))
    return [results[i] for i in range(len(cells))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.loss = min(args.ops, 100), [0.0, 0.1, 0.3]
    if args.fault_backend == "kernel":
        from experiments import kernel  # needs root and Linux: imported only when asked

        if args.transports == list(ALL_TRANSPORTS):  # the default: the sim has no kernel
            args.transports = ["tcp", "udp"]
        return kernel.run(args)
    if args.rate:
        print("error: --rate needs --fault-backend kernel", file=sys.stderr)
        return 2
    try:
        cells = cells_from(args)
    except (ValueError, FaultSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    progress = Progress(len(cells), enabled=not args.no_progress)
    records = [record(run) for run in run_cells(cells, args.jobs, progress)]
    env = environment()
    print(render(records, env))
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    written = write_results(args.out, args.name, records, params, env)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
