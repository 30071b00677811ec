"""``python -m experiments.retries``: non-idempotent bank operations under retries.

Sweeps transports (tcp and udp on real sockets, sim-tcp and sim-udp the
simulator in stream and datagram mode) x semantics x loss (plus any other
faults), runs each cell, audits the ledger against what every client was
told, prints one table per transport and a TCP-vs-UDP table, and writes
results/retries.{json,csv,md,png}.
With ``--fault-backend kernel`` the kernel drops the packets instead
(``experiments.kernel_backend``; root, Linux).

This module is the template of an experiment: a parser, the frozen config it
builds once (``RetriesConfig``), the cells, how one cell runs into a typed
record, and the ``Experiment`` declaration that ``run_experiment`` carries
out; the tables and plot are in ``experiments.retries_report``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.cell_record import BankRecord, bank_record
from experiments.framework.experiment import Environment, Experiment, execute
from experiments.framework.options import (
    add_output_options,
    choice,
    config_from,
    csv_list,
    error,
    probability,
)
from experiments.retries_report import plot, render
from experiments.runner import ALL_TRANSPORTS, SIMULATED, Cell, run_cell
from transports.faults import FaultSpec
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
DEFAULT_LOSS = "0,0.01,0.05,0.1,0.2,0.3"
QUICK_LOSS = (0.0, 0.1, 0.3)
#: Cells at once: they mostly wait out retry timeouts, so even a 2-CPU machine
#: runs three side by side without slowing one another down much.
DEFAULT_JOBS = min(3, os.cpu_count() or 1)
BACKENDS = ("in-process", "kernel")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.retries",
        description="Measure duplicates, lost and unknown operations of bank deposits and "
        "withdrawals under loss and retries, per transport and call semantics.",
    )
    p.add_argument(
        "--transports",
        type=csv_list(choice(ALL_TRANSPORTS)),
        default=",".join(ALL_TRANSPORTS),
        help="tcp and udp: real loopback sockets; sim-tcp and sim-udp: the simulator "
        "(virtual time) in stream (TCP-like) and datagram mode",
    )
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
        choices=BACKENDS,
        default="in-process",
        help="kernel: packet loss by the kernel between two network namespaces "
        "(tcp and udp only; root, Linux; see transports/netns/)",
    )
    p.add_argument("--rate", metavar="RATE", help="kernel backend: tc tbf rate limit, e.g. 10mbit")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help="cells run at once, each in its own process (1: one after another)",
    )
    add_output_options(p, "retries", quick="a fast smoke run: fewer ops and losses")
    return p  # fmt: skip


@dataclass(frozen=True)
class RetriesConfig:
    """The retries command line, checked (``--quick`` applied)."""

    transports: tuple[str, ...]
    semantics: tuple[str, ...]
    loss: tuple[float, ...]
    faults: str  # other faults, as given (FaultSpec syntax)
    ops: int
    clients: int
    max_attempts: int
    policy: str  # as given (parse_policy syntax)
    fault_backend: str
    rate: str | None
    seed: int
    jobs: int
    out: Path
    name: str
    quick: bool
    no_progress: bool


def config(args: argparse.Namespace) -> RetriesConfig:
    """The config of parsed ``args``; ``ValueError`` (or ``FaultSpecError``) if refused."""
    changes: dict[str, object] = {}
    if args.quick:
        changes.update(ops=min(args.ops, 100), loss=QUICK_LOSS)
    if args.fault_backend == "kernel" and args.transports == list(ALL_TRANSPORTS):
        changes["transports"] = ("tcp", "udp")  # the default: the sim has no kernel
    cfg = config_from(RetriesConfig, args, **changes)
    if cfg.rate and cfg.fault_backend != "kernel":
        raise ValueError("--rate needs --fault-backend kernel")
    if cfg.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    return cfg


def cells(cfg: RetriesConfig) -> list[Cell]:
    """transports x semantics x loss, every other setting shared; ``ValueError`` if refused."""
    if cfg.ops < 1 or cfg.clients < 1 or cfg.max_attempts < 1:
        raise ValueError("--ops, --clients and --max-attempts must be at least 1")
    base = FaultSpec.parse(cfg.faults)
    if base.loss:
        raise ValueError("give loss with --loss, not inside --faults")
    policy = parse_policy(cfg.policy)
    return [
        Cell(
            transport=transport,
            semantics=Semantics(semantics),
            faults=base.with_loss(loss),
            policy=policy,
            max_attempts=cfg.max_attempts,
            ops=cfg.ops,
            clients=min(cfg.clients, cfg.ops),
            seed=cfg.seed,
        )
        for transport in cfg.transports
        for semantics in cfg.semantics
        for loss in cfg.loss
    ]


def run(_cfg: RetriesConfig, cell: Cell) -> BankRecord:
    """One in-process cell (runs in a worker process when ``--jobs`` > 1)."""
    return bank_record(run_cell(cell))


def label(cell: Cell) -> str:
    return f"{cell.transport} {cell.semantics.value} loss={cell.faults.loss}"


def cost(cell: Cell) -> tuple[int, float]:
    """Rough wall-clock rank: real transports wait out timeouts, UDP most, the simulator least."""
    return (
        ALL_TRANSPORTS.index(cell.transport) if cell.transport != "udp" else -1,
        -cell.faults.loss,
    )


def jobs(cfg: RetriesConfig) -> int:
    return cfg.jobs


RETRIES = Experiment(
    parser=build_parser,
    config=config,
    cells=cells,
    run=run,
    label=label,
    render=render,
    plot=plot,
    jobs=jobs,
    cost=cost,
)


# The kernel backend: the same cells, run one at a time between network namespaces.
# experiments.kernel_backend needs root and Linux: imported only when asked.


def kernel_cells(cfg: RetriesConfig) -> list[Cell]:
    from experiments.kernel_backend import skip_reason

    reason = skip_reason(cfg.rate)
    if reason is not None:
        raise ValueError(reason)
    if any(transport in SIMULATED for transport in cfg.transports):
        raise ValueError("the kernel backend runs tcp and udp only (the simulator has no kernel)")
    return cells(cfg)


def run_kernel(cfg: RetriesConfig, cell: Cell) -> BankRecord:
    from experiments.kernel_backend import kernel_record, run_kernel_cell

    return kernel_record(run_kernel_cell(cell, rate=cfg.rate))


def kernel_environment(records: Sequence[BankRecord]) -> Environment:
    from experiments.kernel_backend import KernelRecord

    tool = records[0].loss_tool if isinstance(records[0], KernelRecord) else None
    return {"fault_backend": f"kernel ({tool} random drop per packet, netns+veth)"}


def render_kernel(records: Sequence[BankRecord], env: Environment) -> str:
    tables = render(records, env, kernel=True)
    return f"Fault backend: {env['fault_backend']}\n\n{tables}"


def _netns_error() -> type[Exception]:
    from experiments.kernel_backend import NetnsError

    return NetnsError


def kernel_experiment() -> Experiment[RetriesConfig, Cell, BankRecord]:
    """``RETRIES`` with the kernel backend (imports it: root and Linux)."""
    return Experiment(
        parser=build_parser,
        config=config,
        cells=kernel_cells,
        run=run_kernel,
        label=label,
        render=render_kernel,
        plot=plot,
        environment=kernel_environment,
        errors=(_netns_error(),),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config(args)
    except ValueError as err:
        return error(err)
    if cfg.fault_backend == "kernel":
        return execute(kernel_experiment(), cfg)
    return execute(RETRIES, cfg)


if __name__ == "__main__":
    sys.exit(main())
