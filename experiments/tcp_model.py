"""``python -m experiments.tcp_model``: the deterministic TCP model checked against the kernel.

Role: validate ``tcp=retransmit`` (``transports.tcp_model`` in the fault
layer). Every cell is a TCP bank cell (semantics x loss x client timeout).
The kernel backend (``experiments.kernel_backend``: packet loss by nftables
between two network namespaces, TCP's real recovery) runs it
``--kernel-runs`` times; those runs are samples, not replays. The model runs
it once: the virtual-time simulator in stream mode (deterministic), and, as a
second model column, the real-socket TCP driver with the in-process fault
layer (``--tcp-driver``). Per count the model is judged against the kernel
runs' ``[min - SE, max + SE]`` (``experiments.tcp_model_stats``); the
tables are in ``experiments.tcp_model_report``.

The kernel part is slow (seconds to a minute per run). ``--kernel-from
FILE`` reuses the kernel runs of an earlier result file and recomputes only
the model, in seconds; ``--skip-kernel`` runs the model alone. Loss is per
packet in the kernel (data, ACKs, SYNs alike), per message in the model.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from experiments.audit import Audit
from experiments.framework.options import (
    add_list_option,
    add_output_options,
    config_from,
    environment,
    error,
    experiment_parser,
    parameters,
    probability,
)
from experiments.framework.results import Results, write_results
from experiments.framework.run import Progress, run_cells
from experiments.runner import Cell, run_cell
from experiments.tcp_model_record import (
    EarlierResults,
    KernelSample,
    TcpModelRecord,
    load_cells,
    record,
)
from experiments.tcp_model_report import render
from transports.faults import FaultSpec
from transports.retry import parse_policy
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
DEFAULT_SEMANTICS = "maybe,at-least-once,exactly-once"
DEFAULT_LOSS = "0.05,0.1,0.2,0.3"
DEFAULT_TIMEOUTS = "100ms,1.5s"
QUICK_LOSS = (0.1, 0.3)
TCP_DRIVER = ("auto", "run", "reuse", "off")
#: Kernel cells at once. The cells mostly wait out RTOs and client timeouts:
#: two side by side on 2 CPUs gave the same counts as one after another
#: (within one to 1.5 standard errors) in 0.54 of the time
#: (results/kernel/tcp_model_notes.md).
DEFAULT_JOBS = min(2, os.cpu_count() or 1)


def timeout(text: str) -> str:
    """An argparse type: a client timeout such as 100ms or 1.5s (kept as written)."""
    parse_policy(f"fixed:timeout={text}")  # ValueError when it is not a duration
    return text


def build_parser() -> argparse.ArgumentParser:
    p = experiment_parser(
        "experiments.tcp_model",
        "Check the project's deterministic model of TCP's loss recovery (in the simulator, "
        "and on real TCP sockets with the in-process fault layer) against the kernel's TCP "
        "with packet loss between two network namespaces: for each semantics, loss and "
        "client timeout, each count of the model beside the kernel runs' mean and range. "
        "The kernel part needs root and Linux; --kernel-from re-checks stored kernel runs.",
    )
    add_list_option(
        p,
        "--semantics",
        choices=SEMANTICS,
        default=DEFAULT_SEMANTICS,
        help="call semantics, one cell each",
    )
    add_list_option(
        p,
        "--loss",
        parse=probability,
        default=DEFAULT_LOSS,
        help="loss each direction: per packet in the kernel, per message in the model",
    )
    add_list_option(
        p,
        "--timeouts",
        parse=timeout,
        default=DEFAULT_TIMEOUTS,
        help="client timeouts per attempt; one cell per value",
    )
    p.add_argument(
        "--max-attempts", type=int, default=5, metavar="N", help="attempts per operation (maybe: 1)"
    )
    p.add_argument(
        "--ops",
        type=int,
        default=400,
        metavar="N",
        help="deposits and withdrawals per cell, in total over its clients",
    )
    p.add_argument(
        "--clients", type=int, default=8, metavar="N", help="concurrent clients per cell"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of every fault decision and workload")
    p.add_argument(
        "--kernel-runs", type=int, default=5, metavar="N", help="kernel runs per cell (samples)"
    )
    p.add_argument(
        "--kernel-from",
        type=Path,
        metavar="PATH",
        help="reuse the kernel runs of this earlier tcp_model JSON; recompute the model only",
    )
    p.add_argument("--skip-kernel", action="store_true", help="run the model only")
    p.add_argument(
        "--tcp-driver",
        choices=TCP_DRIVER,
        default="auto",
        help="the second model column, real TCP sockets with the in-process fault layer "
        "(real time): run it, reuse it from --kernel-from, or leave it off; auto: run "
        "with the kernel, reuse with --kernel-from, off with --skip-kernel",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help="cells at once, each in its own process",
    )
    add_output_options(p, "tcp_model", quick="a fast smoke run: 100 ops, 2 kernel runs, 2 losses")
    return p  # fmt: skip


@dataclass(frozen=True)
class TcpModelConfig:
    """The tcp_model command line, checked (``--quick`` and ``--tcp-driver auto`` applied)."""

    semantics: tuple[str, ...]
    loss: tuple[float, ...]
    timeouts: tuple[str, ...]
    max_attempts: int
    ops: int
    clients: int
    seed: int
    kernel_runs: int
    kernel_from: Path | None
    skip_kernel: bool
    tcp_driver: str  # run, reuse or off
    jobs: int
    out: Path
    name: str
    quick: bool
    no_progress: bool

    @property
    def measures_kernel(self) -> bool:
        return not self.skip_kernel and self.kernel_from is None


def config(args: argparse.Namespace) -> TcpModelConfig:
    """The config of parsed ``args``; ``ValueError`` if refused."""
    changes: dict[str, Any] = {}
    if args.quick:
        changes.update(ops=min(args.ops, 100), kernel_runs=min(args.kernel_runs, 2),
                       loss=QUICK_LOSS)  # fmt: skip
    if args.tcp_driver == "auto":
        reuse = "reuse" if args.kernel_from is not None else "run"
        changes["tcp_driver"] = "off" if args.skip_kernel else reuse
    cfg = config_from(TcpModelConfig, args, **changes)
    if cfg.skip_kernel and cfg.kernel_from is not None:
        raise ValueError("--skip-kernel and --kernel-from exclude each other")
    if cfg.tcp_driver == "reuse" and cfg.kernel_from is None:
        raise ValueError("--tcp-driver reuse needs --kernel-from")
    if min(cfg.ops, cfg.clients, cfg.max_attempts, cfg.kernel_runs, cfg.jobs) < 1:
        raise ValueError("--ops, --clients, --max-attempts, --kernel-runs, --jobs must be >= 1")
    return cfg


@dataclass(frozen=True)
class ModelCell:
    """One cell and what to do for it: kernel runs to make or reuse, the TCP driver."""

    cell: Cell  # transport tcp: the kernel's and the TCP driver's cell
    timeout: str  # as given
    kernel_runs: int  # to make now
    reused: tuple[KernelSample, ...]  # from --kernel-from
    kernel_source: str
    tcp_driver: bool  # run the TCP driver now
    tcp_reused: Audit | None
    tcp_source: str


def cells(cfg: TcpModelConfig) -> list[ModelCell]:
    """timeouts x semantics x loss; ``ValueError`` if refused (no kernel, missing cells)."""
    earlier = _earlier(cfg)
    if cfg.measures_kernel:
        from experiments.kernel_backend import skip_reason

        reason = skip_reason(None)
        if reason is not None:
            raise ValueError(f"{reason} (--skip-kernel runs the model alone)")
    out = []
    for text in cfg.timeouts:
        policy = parse_policy(f"fixed:timeout={text}")
        for semantics in cfg.semantics:
            for loss in cfg.loss:
                cell = Cell(
                    transport="tcp",
                    semantics=Semantics(semantics),
                    faults=FaultSpec().with_loss(loss),
                    policy=policy,
                    max_attempts=cfg.max_attempts,
                    ops=cfg.ops,
                    clients=min(cfg.clients, cfg.ops),
                    seed=cfg.seed,
                )
                out.append(_model_cell(cfg, cell, text, earlier))
    return out


def _earlier(cfg: TcpModelConfig) -> EarlierResults | None:
    """The ``--kernel-from`` file, checked against this run's workload."""
    if cfg.kernel_from is None:
        return None
    earlier = load_cells(cfg.kernel_from)
    for name in ("ops", "clients", "seed", "max_attempts"):
        theirs, ours = earlier.parameters.get(name), getattr(cfg, name)
        if theirs != ours:
            raise ValueError(
                f"--kernel-from {cfg.kernel_from}: its kernel runs have {name}={theirs}, "
                f"this run {name}={ours}: not the same workload"
            )
    return earlier


def _model_cell(
    cfg: TcpModelConfig, cell: Cell, text: str, earlier: EarlierResults | None
) -> ModelCell:
    if earlier is None:
        source = "skipped" if cfg.skip_kernel else "measured"
        return ModelCell(cell, text, 0 if cfg.skip_kernel else cfg.kernel_runs, (), source,
                         cfg.tcp_driver == "run", None, cfg.tcp_driver)  # fmt: skip
    key = (cell.semantics.value, _ms(cell.policy.timeout), cell.faults.loss)
    found = earlier.cells.get(key)
    if found is None:
        raise ValueError(f"--kernel-from {earlier.path}: no cell {_describe(key)}")
    source = f"reused from {earlier.path}"
    tcp_reused = found.model_tcp if cfg.tcp_driver == "reuse" else None
    tcp_source = source if tcp_reused is not None else "off" if cfg.tcp_driver != "run" else "run"
    return ModelCell(cell, text, 0, found.kernel, source, cfg.tcp_driver == "run", tcp_reused,
                     tcp_source)  # fmt: skip


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 6)


def _describe(key: tuple[str, float, float]) -> str:
    semantics, timeout_ms, loss = key
    return f"{semantics} timeout={timeout_ms:g}ms loss={loss}"


def run(_cfg: TcpModelConfig, mc: ModelCell) -> TcpModelRecord:
    """One cell: its kernel runs (or the reused ones), the model and the TCP driver."""
    samples = list(mc.reused)
    started = time.perf_counter()
    if mc.kernel_runs:
        from experiments.kernel_backend import run_kernel_cell

        for _ in range(mc.kernel_runs):
            k = run_kernel_cell(mc.cell)
            samples.append(KernelSample(k.run.audit, round(k.run.seconds, 3), k.packets,
                                        k.loss_tool))  # fmt: skip
    kernel_seconds = time.perf_counter() - started
    model = run_cell(replace(mc.cell, transport="sim-tcp")).audit
    model_tcp = run_cell(mc.cell).audit if mc.tcp_driver else mc.tcp_reused
    cell = mc.cell
    settings = {
        "semantics": cell.semantics.value,
        "timeout": mc.timeout,
        "timeout_ms": _ms(cell.policy.timeout),
        "loss": cell.faults.loss,
        "policy": cell.policy.describe(),
        "max_attempts": cell.attempts_allowed,
        "ops": cell.ops,
        "clients": cell.clients,
        "seed": cell.seed,
    }
    return record(settings, model, (model_tcp, mc.tcp_source),
                  (samples, mc.kernel_source, kernel_seconds))  # fmt: skip


def label(mc: ModelCell) -> str:
    return f"{mc.cell.semantics.value} timeout={mc.timeout} loss={mc.cell.faults.loss}"


def cost(mc: ModelCell) -> tuple[float, float]:
    """Slowest first: long timeouts and high loss wait longest in the kernel."""
    return (-mc.cell.policy.timeout, -mc.cell.faults.loss)


def kernel_environment(
    cfg: TcpModelConfig, records: Sequence[TcpModelRecord], wall: float
) -> dict[str, Any]:
    """Where the kernel runs come from, and what the kernel part cost."""
    tools = {s.loss_tool for r in records for s in r.kernel}
    env: dict[str, Any] = {
        "fault_backend": "kernel (" + "/".join(sorted(t or "?" for t in tools))
        + " random drop per packet, netns+veth)" if tools else "none (--skip-kernel)",
        "jobs": cfg.jobs,
        "wall_seconds": round(wall, 1),
    }  # fmt: skip
    if cfg.kernel_from is not None:
        earlier = load_cells(cfg.kernel_from)
        env["kernel_from"] = str(cfg.kernel_from)
        # The command that measured the runs: kept through re-renders of re-renders.
        env["kernel_command"] = earlier.environment.get(
            "kernel_command", earlier.environment.get("argv")
        )
        env["kernel_wall_seconds"] = earlier.environment.get("kernel_wall_seconds")
        env["kernel_run_seconds"] = earlier.environment.get("kernel_run_seconds")
    elif cfg.measures_kernel:
        env["kernel_command"] = environment()["argv"]
        env["kernel_wall_seconds"] = round(wall, 1)
        env["kernel_run_seconds"] = round(sum(s.seconds for r in records for s in r.kernel), 1)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run every cell (``--jobs`` at once), print the Markdown, write the files."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config(args)
        todo = cells(cfg)
    except ValueError as err:
        return error(err)
    from transports.netns import NetnsError

    started = time.perf_counter()
    progress = Progress(len(todo), enabled=not cfg.no_progress)
    try:
        records = run_cells(todo, functools.partial(run, cfg), label=label, progress=progress,
                            jobs=cfg.jobs, cost=cost)  # fmt: skip
    except NetnsError as err:
        return error(err)
    env = environment()
    env.update(kernel_environment(cfg, records, time.perf_counter() - started))
    text = render(records, env)
    print(text)
    results = Results(parameters(cfg), env, {"cells": records}, text, records,
                      title="TCP model vs kernel TCP")  # fmt: skip
    written = write_results(cfg.out, cfg.name, results)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
