"""``python -m experiments.roundtrip``: the one-client quick check kept from the first benchmark.

One client, text service, our server against the echo server, TCP and UDP,
in alternating rounds: round trips/s, p50/p99/max latency and the ratio to
echo. The full benchmark is ``python -m experiments.throughput``; the peers,
workloads and load client this uses are ``experiments.bench.peers``,
``.workloads`` and ``.load``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.bench.load import drive
from experiments.bench.peers import start_peer, stop_peer
from experiments.bench.workloads import TEXT, service_workload
from experiments.framework.options import add_list_option, config_from, experiment_parser
from experiments.framework.records import Record
from experiments.framework.tables import Column, percentile, table


@dataclass(frozen=True)
class RoundtripConfig:
    transports: tuple[str, ...]
    seconds: float  # measured window per round
    rounds: int


@dataclass(frozen=True, kw_only=True)
class QuickRow(Record):
    transport: str
    server: str
    rate: int  # round trips/s, median over rounds
    p50_us: float
    p99_us: float
    max_us: float
    vs_echo: float


COLUMNS: tuple[Column[QuickRow], ...] = (
    Column("transport", lambda r: r.transport),
    Column("server", lambda r: r.server),
    Column("round trips/s", lambda r: r.rate),
    Column("p50 us", lambda r: r.p50_us),
    Column("p99 us", lambda r: r.p99_us),
    Column("max us", lambda r: r.max_us),
    Column("/ echo", lambda r: r.vs_echo),
)


def measure(cfg: RoundtripConfig) -> list[QuickRow]:
    """Ours and echo per transport, ``rounds`` alternating windows of one client each."""
    rows = []
    for transport in cfg.transports:
        peers = [start_peer("ours", "ours", transport), start_peer("echo", "echo", transport)]
        try:
            rates: dict[str, list[float]] = {p.label: [] for p in peers}
            lat: dict[str, list[float]] = {p.label: [] for p in peers}
            for _ in range(cfg.rounds):
                for p in peers:
                    load = service_workload("text", transport, echo=p.kind == "echo")
                    s = asyncio.run(drive(transport, p.port, load, 1, seconds=cfg.seconds))
                    rates[p.label].append(s.rate)
                    lat[p.label] += s.latencies
        finally:
            for p in peers:
                stop_peer(p)
        echo = sorted(rates["echo"])[len(rates["echo"]) // 2]
        for label in rates:
            us = sorted(x * 1e6 for x in lat[label])
            rate = sorted(rates[label])[len(rates[label]) // 2]
            rows.append(
                QuickRow(
                    transport=transport,
                    server=label,
                    rate=round(rate),
                    p50_us=percentile(us, 50),
                    p99_us=percentile(us, 99),
                    max_us=us[-1] if us else 0.0,
                    vs_echo=rate / echo,
                )
            )
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser(
        "experiments.roundtrip",
        "The one-client quick check: round trips per second and p50/p99/max latency of our "
        "text server against a minimal asyncio echo server, over TCP and UDP, in "
        "alternating rounds. The full benchmark is python -m experiments.throughput.",
    )
    add_list_option(
        parser,
        "--transports",
        choices=("tcp", "udp"),
        default="tcp,udp",
        help="transports to measure",
    )
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="measured window per round, seconds"
    )
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="alternating rounds per server")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    cfg = config_from(RoundtripConfig, build_parser().parse_args(argv))
    rows = measure(cfg)
    print(f"1 client, text.convert({TEXT!r}), {cfg.rounds} alternating rounds of {cfg.seconds} s")
    print(table(rows, COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
