"""``python -m experiments.outages``: a partition, the retry storm after it, policies compared.

Hundreds of simulated clients (``--clients``, default 200) each start a bank
deposit or withdrawal every ``--interval`` at a seeded phase: a steady
offered load. At ``--partition-at`` the network is cut for ``--partition``
seconds (``--direction``: both, requests or replies), then the load goes on
for ``--after``. A client runs its operations one at a time, so what falls
due during the partition waits in its backlog and goes out back to back
after the heal. For each retry policy (fixed, expo, expo-full, expo-equal,
decorrelated, adaptive), with and without a retry budget (gRFC A6
throttling), and each semantics, a cell is audited: ok / failed / unknown /
duplicated / phantom, attempts per operation, the server's arrivals per 10 ms
window (its peak after the heal against the steady load), the time until the
backlog drains, and latency from each operation's scheduled start. A second
set of cells cuts only the replies (``--reply-only``, one partition length
each, policy expo, no budget): every deposit applies, and the clients that
give up meanwhile report unknown, which the audit counts as phantoms.

By default the simulator, in virtual time (sim-udp: a cut datagram is lost;
sim-tcp: TCP retransmits on its RTO back-off until a copy goes out after the
heal): one seed reproduces every table exactly. ``--transports udp,tcp``
runs the same cells on real loopback sockets, one at a time, in real time
(on a 2-core machine 200 clients keep their schedule; with 400 the one server
process no longer answers within the timeout before the partition: see
results/outages_real_400.md; after the heal its throughput caps the burst).
The default run (about 1.5 minutes on 2 shared cores) writes
results/outages.{json,csv,md,png}, with the reading of the four claims and
the legend of the columns (``experiments.outages_reading``,
``experiments.outages_report``); ``--quick`` runs 40 clients and three policies.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from experiments.framework.experiment import Experiment, run_experiment
from experiments.framework.options import (
    add_list_option,
    add_output_options,
    choice,
    config_from,
    csv_list,
    duration,
    experiment_parser,
)
from experiments.outages_cell import REAL, STREAM, Load, OutageCell, OutageRecord, run_outage
from experiments.outages_reading import reading_text
from experiments.outages_report import LEGEND, plot, render
from transports.faults import Cut
from transports.retry import EXPO, EXPO_FULL, FIXED, POLICY_NAMES
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
BUDGETS = ("no", "yes")
DIRECTIONS = tuple(c.value for c in Cut)
#: The reply-only cells' policy: no jitter, so the retry times are plain to read.
REPLY_ONLY_POLICY = EXPO
QUICK_CLIENTS = 40
QUICK_POLICIES = (FIXED, EXPO, EXPO_FULL)


def lengths(text: str) -> list[float]:
    """An argparse type: durations like ``500ms,2s``, or ``none`` for no cells."""
    return [] if text.strip().lower() == "none" else csv_list(duration)(text)


DESCRIPTION = """\
A steady bank load from many clients, one network partition, and the retry
storm after it: each retry policy, with and without a retry budget, under each
call semantics. Per cell: ok / failed / unknown / duplicated / phantom,
attempts per operation, the server's arrivals per 10 ms window (the peak after
the heal against the steady load), the time until the backlog drains, and
latency percentiles. Reply-only partitions (--reply-only) show deposits that
apply while their clients report unknown.

By default the simulator, in virtual time: one seed reproduces every table
exactly. --transports udp,tcp runs the same cells on real loopback sockets,
one at a time, in real time. Writes outages.{json,csv,md,png}.
"""


def build_parser() -> argparse.ArgumentParser:
    p = experiment_parser("experiments.outages", DESCRIPTION)
    add_list_option(
        p,
        "--transports",
        choices=(*STREAM, *REAL),
        default="sim-udp",
        help="sim-udp (datagrams) and/or sim-tcp (TCP's retransmission model) in virtual "
        "time; udp and/or tcp: real loopback sockets in real time (cells one at a time)",
    )
    add_list_option(
        p,
        "--policies",
        choices=POLICY_NAMES,
        default=",".join(POLICY_NAMES),
        help="retry policies to compare",
    )
    add_list_option(
        p,
        "--budgets",
        choices=BUDGETS,
        default=",".join(BUDGETS),
        help="without (no) and/or with (yes) a retry budget",
    )
    add_list_option(
        p,
        "--semantics",
        choices=SEMANTICS,
        default=",".join(SEMANTICS),
        help="call semantics to compare",
    )
    p.add_argument("--clients", type=int, default=200, help="concurrent clients")
    p.add_argument(
        "--interval",
        type=duration,
        default="100ms",
        help="each client starts one operation this often",
    )
    p.add_argument(
        "--partition-at", type=duration, default="500ms", help="when the partition starts"
    )
    p.add_argument("--partition", type=duration, default="2s", help="the partition's length")
    p.add_argument(
        "--direction",
        type=choice(DIRECTIONS),
        default=Cut.BOTH.value,
        help=f"what the partition cuts, one of: {', '.join(DIRECTIONS)}",
    )
    p.add_argument("--after", type=duration, default="1500ms", help="load after the heal")
    p.add_argument(
        "--reply-only",
        type=lengths,
        default="500ms,2s",
        metavar="LENGTHS",
        help="lengths of the extra reply-only partitions (policy expo, no budget); "
        "none: no such cells",
    )
    p.add_argument(
        "--timeout",
        type=duration,
        default="50ms",
        help="per-attempt timeout (adaptive: the RTO's initial value)",
    )
    p.add_argument("--base", type=duration, default="50ms", help="backoff base")
    p.add_argument("--cap", type=duration, default="1s", help="backoff cap")
    p.add_argument("--max-attempts", type=int, default=6, help="attempts per operation at most")
    p.add_argument(
        "--retention", type=duration, default="1s", help="at-most-once reply cache retention"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="simulated cells run in this many processes",
    )
    add_output_options(
        p, "outages", quick=f"{QUICK_CLIENTS} clients, policies fixed, expo, expo-full"
    )
    return p  # fmt: skip


@dataclass(frozen=True)
class OutagesConfig:
    """The outages command line, checked (``--quick`` applied)."""

    transports: tuple[str, ...]
    policies: tuple[str, ...]
    budgets: tuple[str, ...]
    semantics: tuple[str, ...]
    clients: int
    interval: float
    partition_at: float
    partition: float
    direction: str
    after: float
    reply_only: tuple[float, ...]
    timeout: float
    base: float
    cap: float
    max_attempts: int
    retention: float
    seed: int
    jobs: int
    out: Path
    name: str
    quick: bool
    no_progress: bool

    @property
    def load(self) -> Load:
        return Load(
            clients=self.clients,
            interval=self.interval,
            partition_at=self.partition_at,
            after=self.after,
            timeout=self.timeout,
            base=self.base,
            cap=self.cap,
            max_attempts=self.max_attempts,
            retention=self.retention,
            seed=self.seed,
        )


def config(args: argparse.Namespace) -> OutagesConfig:
    """The config of parsed ``args``; ``ValueError`` if refused."""
    changes: dict[str, object] = {}
    if args.quick:
        changes.update(clients=min(args.clients, QUICK_CLIENTS), policies=QUICK_POLICIES)
    cfg = config_from(OutagesConfig, args, **changes)
    if cfg.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if cfg.base > cfg.cap:
        raise ValueError("--base must not exceed --cap")
    _ = cfg.load  # checks clients, attempts and the steady span before the partition
    return cfg


def cells(cfg: OutagesConfig) -> list[OutageCell]:
    """policies x budgets x semantics with the main partition, then the reply-only ones."""
    cut = Cut(cfg.direction)
    main = [
        OutageCell(t, policy, budget == "yes", Semantics(s), cut, cfg.partition)
        for t in cfg.transports
        for policy in cfg.policies
        for budget in cfg.budgets
        for s in cfg.semantics
        # maybe never retries: a budget changes nothing (its cell without one stands)
        if not (budget == "yes" and s == Semantics.MAYBE.value and "no" in cfg.budgets)
    ]
    extra = [
        OutageCell(t, REPLY_ONLY_POLICY, False, Semantics(s), Cut.REPLIES, length)
        for t in cfg.transports
        for length in cfg.reply_only
        for s in cfg.semantics
    ]
    return list(dict.fromkeys(main + extra))  # a reply-only main run lists a cell once


def run(cfg: OutagesConfig, cell: OutageCell) -> OutageRecord:
    return run_outage(cfg.load, cell)


def label(cell: OutageCell) -> str:
    budget = " budget" if cell.budget else ""
    return (
        f"{cell.transport} {cell.cut.value} {cell.length:g}s {cell.policy}{budget} "
        f"{cell.semantics.value}"
    )


def jobs(cfg: OutagesConfig) -> int:
    # Real cells run in real time: side by side they would slow one another.
    return 1 if any(t in REAL for t in cfg.transports) else cfg.jobs


OUTAGES = Experiment(
    parser=build_parser,
    config=config,
    cells=cells,
    run=run,
    label=label,
    render=render,
    plot=plot,
    jobs=jobs,
    reading=reading_text,
    legend=LEGEND,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_experiment(OUTAGES, argv)


if __name__ == "__main__":
    sys.exit(main())
