"""``python -m experiments.retries``: non-idempotent bank operations under retries.

Sweeps transports x client timeouts x semantics x loss (plus any other
faults), runs each cell, audits the ledger against what every client was
told, prints one table per transport and timeout, TCP next to UDP per timeout
(sim-tcp next to sim-udp too) and a reading computed from the run's numbers,
and writes results/retries.{json,csv,md,png}. With ``--fault-backend kernel``
the kernel drops the packets instead (``experiments.kernel_backend``; root,
Linux).

Transports: ``tcp`` and ``udp`` over real loopback sockets, ``sim-tcp`` and
``sim-udp`` the simulator in stream and datagram mode (virtual time). A lost
TCP message is retransmitted as Linux does (200 ms, then 400, 800 ms ...),
and later messages wait behind it; a lost datagram is gone. The default
timeouts, 50 ms and 1 s, lie either side of that first retransmission: below
it a TCP client retries into the queue behind the lost message and both
copies execute; above it TCP hides most losses that UDP must retry.

Runtime (the default run: 4 transports x 2 timeouts x 4 semantics x 3 losses,
96 cells, about 75 s on 2 cores): real cells wait in real time, UDP ones out
their 1 s timeouts (an operation that gives up waits 5 s) and TCP ones out
the retransmissions (and a closing client for what TCP still holds), so a real
cell lasts as long as its slowest client.
Hence 200 operations spread over 20 clients (10 each), losses 0, 0.1 and 0.3
(0.2 would add about half a minute), and 3 cells per CPU at once (they mostly
sleep; the slowest start first). ``--quick`` (about 15 s): 40 operations and
loss 0.3 only.

This module is the template of an experiment: a parser, the frozen config it
builds once (``RetriesConfig``), the cells, how one cell runs into a typed
record, and the ``Experiment`` declaration that ``run_experiment`` carries
out; the tables and plot are in ``experiments.retries_report``, the reading
in ``experiments.retries_reading``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.cell_record import BankRecord, bank_record
from experiments.framework.experiment import Environment, Experiment, execute
from experiments.framework.options import (
    add_list_option,
    add_output_options,
    config_from,
    duration,
    error,
    experiment_parser,
    probability,
)
from experiments.retries_reading import reading_text
from experiments.retries_report import LEGEND, plot, render
from experiments.runner import ALL_TRANSPORTS, SIMULATED, Cell, run_cell
from transports.faults import FaultSpec
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics
from transports.tcp_model import TCP_RTO_MIN

SEMANTICS = tuple(s.value for s in Semantics)
DEFAULT_LOSS = "0,0.1,0.3"
#: One timeout below TCP's first retransmission (200 ms on loopback), one above.
DEFAULT_TIMEOUTS = "50ms,1s"
DEFAULT_OPS = 200
DEFAULT_CLIENTS = 20
QUICK_LOSS = (0.3,)
QUICK_OPS = 40
#: Cells at once: real cells mostly wait out timeouts and retransmissions, so
#: even a 2-CPU machine runs six side by side without slowing one another much.
DEFAULT_JOBS = min(8, 3 * (os.cpu_count() or 1))
BACKENDS = ("in-process", "kernel")
DESCRIPTION = (
    "Bank deposits and withdrawals under message loss and client retries: for each "
    "transport, client timeout, call semantics and loss, how many operations the server "
    "applied twice, how many the client was told failed or could not tell (unknown), "
    "audited against the real SQLite ledger, beside the model's prediction. "
    "About 75 s on 2 cores; --quick about 15 s."
)
KERNEL_DESCRIPTION = (
    "The retries experiment with packet loss by the kernel instead of the in-process "
    "fault layer: client and server in two network namespaces joined by veth, packets "
    "dropped at random by nftables (or iptables). Needs root and Linux; tcp and udp only."
)


def build_parser(*, kernel: bool = False) -> argparse.ArgumentParser:
    """The command line; ``kernel``: for ``experiments.kernel``, whose backend is fixed."""
    p = experiment_parser(
        "experiments.kernel" if kernel else "experiments.retries",
        KERNEL_DESCRIPTION if kernel else DESCRIPTION,
    )
    add_list_option(
        p,
        "--transports",
        choices=("tcp", "udp") if kernel else ALL_TRANSPORTS,
        default="tcp,udp" if kernel else ",".join(ALL_TRANSPORTS),
        help="real sockets between two network namespaces"
        if kernel
        else "tcp and udp: real loopback sockets; sim-tcp and sim-udp: the simulator "
        "(virtual time) behaving like TCP and like UDP",
    )
    add_list_option(
        p,
        "--semantics",
        choices=SEMANTICS,
        default=",".join(SEMANTICS),
        help="call semantics, one cell each",
    )
    add_list_option(
        p,
        "--loss",
        parse=probability,
        default=DEFAULT_LOSS,
        help="probability that a message is lost, each direction; one cell per value",
    )
    add_list_option(
        p,
        "--timeouts",
        parse=duration,
        default=DEFAULT_TIMEOUTS,
        help="the client's timeout per attempt, e.g. 50ms,1s; one cell per value "
        "(TCP's first retransmission comes after 200 ms)",
    )
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms,app_fail=0.1'",
    )
    p.add_argument(
        "--ops",
        type=int,
        default=DEFAULT_OPS,
        metavar="N",
        help="deposits and withdrawals per cell, in total over its clients",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=DEFAULT_CLIENTS,
        metavar="N",
        help="concurrent clients per cell; each makes ops/clients operations",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        metavar="N",
        help="attempts per operation before the client gives up (maybe: 1)",
    )
    p.add_argument(
        "--policy",
        default="fixed",
        metavar="NAME[:k=v,...]",
        help=f"retry policy, one of {', '.join(POLICY_NAMES)}, with optional base=, cap= "
        "and on-timeout= (e.g. expo-full:cap=200ms); the timeout comes from --timeouts",
    )
    if kernel:
        p.set_defaults(fault_backend="kernel")
    else:
        p.add_argument(
            "--fault-backend",
            choices=BACKENDS,
            default="in-process",
            help="kernel: packet loss by the kernel between two network namespaces "
            "(tcp and udp only; root, Linux); the same as python -m experiments.kernel",
        )
    p.add_argument(
        "--rate",
        metavar="RATE",
        help="kernel backend only: a bandwidth limit (tc tbf), e.g. 10mbit",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of every fault decision and workload")
    p.add_argument(
        "--jobs",
        type=int,
        default=1 if kernel else DEFAULT_JOBS,
        metavar="N",
        help="cells run at once, each in its own process (1: one after another)",
    )
    add_output_options(
        p,
        "retries_kernel" if kernel else "retries",
        quick="a fast smoke run (~15 s): 40 ops, loss 0.3 only",
    )
    return p  # fmt: skip


@dataclass(frozen=True)
class RetriesConfig:
    """The retries command line, checked (``--quick`` applied)."""

    transports: tuple[str, ...]
    semantics: tuple[str, ...]
    loss: tuple[float, ...]
    timeouts: tuple[float, ...]  # seconds, one cell each
    faults: str  # other faults, as given (FaultSpec syntax)
    ops: int
    clients: int
    max_attempts: int
    policy: str  # as given (parse_policy syntax, without timeout=)
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
        changes.update(ops=min(args.ops, QUICK_OPS), loss=QUICK_LOSS)
    if args.fault_backend == "kernel" and args.transports == list(ALL_TRANSPORTS):
        changes["transports"] = ("tcp", "udp")  # the default: the sim has no kernel
    cfg = config_from(RetriesConfig, args, **changes)
    if cfg.rate and cfg.fault_backend != "kernel":
        raise ValueError("--rate needs --fault-backend kernel")
    if cfg.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if len(set(cfg.timeouts)) != len(cfg.timeouts):
        raise ValueError(f"--timeouts names a timeout twice: {_durations(cfg.timeouts)}")
    if "timeout" in _policy_keys(cfg.policy):
        raise ValueError("give the timeout with --timeouts, not inside --policy")
    return cfg


def _policy_keys(policy: str) -> set[str]:
    """The parameter names written in a ``--policy`` value."""
    params = policy.partition(":")[2]
    return {item.partition("=")[0].strip() for item in params.split(",") if item.strip()}


def _durations(seconds: Sequence[float]) -> str:
    return ", ".join(f"{s * 1000:g}ms" if s < 1 else f"{s:g}s" for s in seconds)


def cells(cfg: RetriesConfig) -> list[Cell]:
    """transports x semantics x timeout x loss, every other setting shared.

    ``ValueError`` if refused. Each cell's policy is ``--policy`` with that timeout.
    """
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
            policy=dataclasses.replace(policy, timeout=timeout),
            max_attempts=cfg.max_attempts,
            ops=cfg.ops,
            clients=min(cfg.clients, cfg.ops),
            seed=cfg.seed,
        )
        for transport in cfg.transports
        for timeout in cfg.timeouts
        for semantics in cfg.semantics
        for loss in cfg.loss
    ]


def run(_cfg: RetriesConfig, cell: Cell) -> BankRecord:
    """One in-process cell (runs in a worker process when ``--jobs`` > 1)."""
    return bank_record(run_cell(cell))


def label(cell: Cell) -> str:
    return (
        f"{cell.transport} timeout={_durations([cell.policy.timeout])} "
        f"{cell.semantics.value} loss={cell.faults.loss}"
    )


def cost(cell: Cell) -> tuple[bool, float]:
    """Rough wall-clock rank, slowest first: real transports wait out their timeouts
    (and TCP its 200 ms retransmissions), the simulator waits for nothing."""
    waits = cell.faults.loss * max(cell.policy.timeout, TCP_RTO_MIN) * cell.ops / cell.clients
    return (cell.transport in SIMULATED, -waits)


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
    reading=reading_text,
    legend=LEGEND,
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
        reading=reading_text,
        legend=LEGEND,
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
