"""The throughput benchmark's command line and the frozen config built from it once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from experiments.bench.labels import SERVICES, TRANSPORTS
from experiments.bench.long_checks import LongCheckSettings
from experiments.framework.options import (
    add_list_option,
    add_output_options,
    config_from,
    experiment_parser,
)

DOC = """\
Throughput and latency of every transport and service, as ratios to ceilings
measured in the same run: round trips per second and p50/p99/max latency for
tcp and udp, the text, numbers and bank services, at 1, 4, 64 and 512
concurrent clients, beside a minimal asyncio echo server (and one on uvloop,
with the bench extra), the lab's thread-per-connection server, our server
with a zero-probability fault layer, and our server as several processes.
Also the simulator's operations per second, prime check times, and short
numbers checks beside 400-digit ones. A full run takes several minutes.
"""


def build_parser(description: str = DOC) -> argparse.ArgumentParser:
    p = experiment_parser("experiments.throughput", description)
    add_list_option(
        p, "--transports", choices=TRANSPORTS, default="tcp,udp", help="transports to measure"
    )
    add_list_option(
        p, "--services", choices=SERVICES, default="text,numbers,bank", help="services to measure"
    )
    add_list_option(
        p,
        "--clients",
        parse=int,
        default="1,4,64,512",
        help="numbers of concurrent clients, one measurement each",
    )
    p.add_argument("--seconds", type=float, default=0.4, help="measured window per round, seconds")
    p.add_argument(
        "--warmup", type=float, default=0.1, help="unmeasured start of each window, seconds"
    )
    # 5, not 3: with 3, the 512-client ratio to the best moved by 0.3 between
    # runs (a lucky round at 4 or 64 clients sets the best).
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        metavar="N",
        help="measured rounds per server and client count",
    )
    p.add_argument(
        "--sim-ops",
        type=int,
        default=4000,
        metavar="N",
        help="operations per simulator measurement",
    )
    p.add_argument("--no-uvloop", action="store_true", help="skip the uvloop echo ceiling")
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="also measure the text server as this many processes (serve --workers); 1: skip",
    )
    p.add_argument("--seed", type=int, default=1, help="orders the servers within each round")
    p.add_argument(
        "--pairs",
        type=int,
        default=12,
        metavar="N",
        help="pairs of adjacent windows (echo, ours) for the one-client ratio to echo "
        "(needs 1 in --clients); 0: skip",
    )
    p.add_argument(
        "--pair-seconds",
        type=float,
        default=0.1,
        help="measured window per side of a pair, seconds",
    )
    p.add_argument(
        "--pair-warmup",
        type=float,
        default=0.05,
        help="warm-up before each window of a pair, seconds",
    )
    add_output_options(
        p, "throughput", quick="smoke run: 1 round, 1 and 64 clients, 4 pairs", progress=False
    )
    p.add_argument("--no-plot", action="store_true", help="write no PNG")
    p.add_argument(
        "--instructions",
        action="store_true",
        help="also count the fault layer's cost in instructions with valgrind (+2.5 min)",
    )
    return p  # fmt: skip


@dataclass(frozen=True)
class ThroughputConfig:
    """The throughput command line, checked (``--quick`` applied)."""

    transports: tuple[str, ...]
    services: tuple[str, ...]
    clients: tuple[int, ...]
    seconds: float
    warmup: float
    rounds: int
    sim_ops: int
    no_uvloop: bool
    workers: int
    seed: int
    pairs: int
    pair_seconds: float
    pair_warmup: float
    out: Path
    name: str
    quick: bool
    no_plot: bool
    instructions: bool

    @property
    def long_checks(self) -> LongCheckSettings:
        """How long the long-checks measurement runs."""
        return LongCheckSettings(1, 0.5) if self.quick else LongCheckSettings(2, 1.0)


def config(args: argparse.Namespace) -> ThroughputConfig:
    """The config of parsed ``args``; ``ValueError`` if refused."""
    changes: dict[str, object] = {}
    if args.quick:
        changes.update(rounds=1, clients=(1, 64), seconds=min(args.seconds, 0.3))
        changes.update(sim_ops=min(args.sim_ops, 1000), pairs=min(args.pairs, 4))
    cfg = config_from(ThroughputConfig, args, **changes)
    if cfg.rounds < 1 or cfg.seconds <= 0 or min(cfg.clients) < 1 or cfg.workers < 1:
        raise ValueError("--rounds, --seconds, --clients and --workers must be positive")
    if cfg.pairs < 0 or cfg.pair_seconds <= 0 or cfg.pair_warmup < 0:
        raise ValueError("--pairs, --pair-seconds, --pair-warmup out of range")
    return cfg
