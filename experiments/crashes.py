"""``python -m experiments.crashes``: server crashes x call semantics, simulated and real.

Role: show what a server crash does to each semantics' promise, on the
simulator and on real TCP and UDP servers whose process really dies. Tables
carry the audit columns of ``experiments.cell_record`` plus the crash rate and the
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

This module is the command line, its config and the choice of cells (built
like ``experiments.retries``); a real cell runs in ``experiments.crash_runner``,
the records and tables come from ``experiments.crash_report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.crash_report import (
    LEGEND,
    CrashRecord,
    RealCrashRecord,
    crash_record,
    reading,
    real_record,
    render,
)
from experiments.crash_runner import RealCell, RealRun, run_real_cell
from experiments.framework.experiment import Experiment, run_experiment
from experiments.framework.options import (
    add_list_option,
    add_output_options,
    config_from,
    experiment_parser,
    probability,
)
from experiments.runner import Cell, run_cell
from services.programs.cli import CRASH_POINTS, RANDOM_POINT
from transports.faults import FaultSpec
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

__all__ = ["CRASHES", "CrashesConfig", "RealCell", "RealRun", "build_parser", "main",
           "run_real_cell"]  # fmt: skip

SEMANTICS = tuple(s.value for s in Semantics)
TRANSPORTS = ("sim", "tcp", "udp")
DEFAULT_CRASH = "0,0.01,0.02,0.05,0.1,0.2"
DEFAULT_REAL_CRASH = "0.05,0.1"
# Rides out a restart (~0.2-0.4 s): a TCP client sees the refused connect at
# once and backs off 50, 100, 200, 400, 500 ms ...; a UDP one waits 250 ms
# per attempt. 10 attempts span more than 3 s either way.
DEFAULT_REAL_POLICY = "expo:timeout=250ms,base=50ms,cap=500ms"


def build_parser() -> argparse.ArgumentParser:
    p = experiment_parser(
        "experiments.crashes",
        "Bank deposits and withdrawals while the server crashes (its reply cache is lost, "
        "its SQLite ledger kept), per call semantics: how many operations were applied "
        "twice, applied although the client saw failed or unknown, or left unknown. On "
        "the simulator, and on real TCP and UDP server processes killed with SIGKILL and "
        "restarted on the same ledger (its integrity checked after every crash).",
    )
    add_list_option(
        p,
        "--transports",
        choices=TRANSPORTS,
        default=",".join(TRANSPORTS),
        help="sim: the simulator (virtual time); tcp, udp: real server processes",
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
        "--crash",
        parse=probability,
        default=DEFAULT_CRASH,
        help="sim: crash probability per request arrival; one cell per value",
    )
    p.add_argument(
        "--loss",
        type=probability,
        default=0.0,
        help="probability that a message is lost, each direction, every cell",
    )
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms' (no crash= or loss=)",
    )
    p.add_argument(
        "--ops",
        type=int,
        default=400,
        metavar="N",
        help="sim: deposits and withdrawals per cell, in total over its clients",
    )
    p.add_argument(
        "--clients", type=int, default=8, metavar="N", help="concurrent clients per cell"
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        metavar="N",
        help="sim: attempts per operation before the client gives up",
    )
    p.add_argument(
        "--policy",
        default="fixed:timeout=100ms",
        metavar="NAME[:k=v,...]",
        help=f"sim: retry policy, one of {', '.join(POLICY_NAMES)}, with optional timeout=, "
        "base=, cap=",
    )
    real = p.add_argument_group("real servers (tcp, udp)")
    add_list_option(
        real,
        "--real-crash",
        parse=probability,
        default=DEFAULT_REAL_CRASH,
        help="crash probability per executed deposit or withdrawal; one cell per value",
    )
    real.add_argument(
        "--real-ops",
        type=int,
        default=100,
        metavar="N",
        help="deposits and withdrawals per cell, in total over its clients",
    )
    real.add_argument(
        "--real-policy",
        default=DEFAULT_REAL_POLICY,
        metavar="NAME[:k=v,...]",
        help="retry policy of the real clients (long enough to ride out a restart)",
    )
    real.add_argument(
        "--real-max-attempts",
        type=int,
        default=10,
        metavar="N",
        help="attempts per operation before a real client gives up",
    )
    real.add_argument(
        "--crash-point",
        choices=CRASH_POINTS,
        default=RANDOM_POINT,
        help="where the server dies: before applying the operation, after committing it, "
        "or either at random (50/50; the simulator always draws 50/50)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of every fault decision and workload")
    add_output_options(p, "crashes", quick="a fast smoke run: fewer ops and rates")
    return p  # fmt: skip


@dataclass(frozen=True)
class CrashesConfig:
    """The crashes command line, checked (``--quick`` applied)."""

    transports: tuple[str, ...]
    semantics: tuple[str, ...]
    crash: tuple[float, ...]  # sim: crash probability per request arrival
    loss: float
    faults: str  # other faults, as given (no crash= or loss=)
    ops: int
    clients: int
    max_attempts: int
    policy: str
    real_crash: tuple[float, ...]  # real servers: per executed deposit/withdrawal
    real_ops: int
    real_policy: str
    real_max_attempts: int
    crash_point: str
    seed: int
    out: Path
    name: str
    quick: bool
    no_progress: bool


def config(args: argparse.Namespace) -> CrashesConfig:
    """The config of parsed ``args``; ``ValueError`` (or ``FaultSpecError``) if refused."""
    changes: dict[str, object] = {}
    if args.quick:
        changes.update(ops=min(args.ops, 100), crash=(0.0, 0.05, 0.2))
        changes.update(real_ops=min(args.real_ops, 60), real_crash=(0.1,))
    cfg = config_from(CrashesConfig, args, **changes)
    _base_faults(cfg)
    return cfg


def _base_faults(cfg: CrashesConfig) -> FaultSpec:
    if min(cfg.ops, cfg.real_ops, cfg.clients, cfg.max_attempts, cfg.real_max_attempts) < 1:
        raise ValueError("operation, client and attempt counts must be at least 1")
    base = FaultSpec.parse(cfg.faults)
    if base.crash or base.loss:
        raise ValueError("give crash rates with --crash and loss with --loss, not in --faults")
    return dataclasses.replace(base, loss=cfg.loss)


def _cells(
    cfg: CrashesConfig,
    transport: str,
    rates: Sequence[float],
    policy: str,
    attempts: int,
    ops: int,
) -> list[Cell]:
    base = _base_faults(cfg)
    retry = parse_policy(policy)
    clients = min(cfg.clients, ops)
    return [
        Cell(
            transport,
            Semantics(s),
            dataclasses.replace(base, crash=c),
            retry,
            attempts,
            ops,
            clients,
            cfg.seed,
        )
        for s in cfg.semantics
        for c in rates
    ]


def sim_cells(cfg: CrashesConfig) -> list[Cell]:
    """The simulator cells (none unless ``sim`` is among ``--transports``)."""
    if "sim" not in cfg.transports:
        return []
    return _cells(cfg, "sim", cfg.crash, cfg.policy, cfg.max_attempts, cfg.ops)


def real_cells(cfg: CrashesConfig) -> list[RealCell]:
    """The real-server cells: transports x semantics x ``--real-crash``."""
    return [
        RealCell(cell, cfg.crash_point)
        for transport in cfg.transports
        if transport != "sim"
        for cell in _cells(
            cfg, transport, cfg.real_crash, cfg.real_policy, cfg.real_max_attempts, cfg.real_ops
        )
    ]


def cells(cfg: CrashesConfig) -> list[Cell | RealCell]:
    """The simulator cells, then the real-server ones."""
    return [*sim_cells(cfg), *real_cells(cfg)]


def run(_cfg: CrashesConfig, cell: Cell | RealCell) -> CrashRecord:
    if isinstance(cell, RealCell):
        return real_record(run_real_cell(cell))
    return crash_record(run_cell(cell))


def label(cell: Cell | RealCell) -> str:
    c = cell.cell if isinstance(cell, RealCell) else cell
    return f"{c.transport} {c.semantics.value} crash={c.faults.crash}"


def status(records: Sequence[CrashRecord]) -> int:
    """1 when a real cell broke a guarantee."""
    return int(any(isinstance(r, RealCrashRecord) and r.violations for r in records))


CRASHES = Experiment(
    parser=build_parser,
    config=config,
    cells=cells,
    run=run,
    label=label,
    render=render,
    status=status,
    reading=reading,
    legend=LEGEND,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_experiment(CRASHES, argv)


if __name__ == "__main__":
    sys.exit(main())
