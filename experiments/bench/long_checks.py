"""``python -m experiments.long_checks``: short numbers checks beside long ones.

One client asks our numbers server, in a closed loop, whether a 400-digit
prime is prime (~30 ms of Baillie-PSW); at the same time ``SHORT_CLIENTS``
clients ask about 2147483647, the throughput experiment's numbers request.
Two servers, in alternating rounds: the default, which tests numbers of more
than ``OFFLOAD_DIGITS`` digits in a separate process (``--prime-processes
1``), and ``--prime-processes 0``, which tests every number on its event loop.
Each round also measures the short clients alone on the same server, the
reference for their rate. Also part of ``python -m experiments.throughput``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.bench.load import Sample, drive
from experiments.bench.peers import start_peer, stop_peer
from experiments.bench.workloads import service_workload
from experiments.framework.options import add_list_option, config_from, experiment_parser
from experiments.framework.records import Record
from experiments.framework.tables import Column, percentile, table
from services.numbers import OFFLOAD_DIGITS
from services.primes import MAX_DIGITS, is_probable_prime

SHORT_CLIENTS = 4
DESCRIPTION = (
    f"Short numbers checks beside long ones: {SHORT_CLIENTS} clients check a 10-digit "
    "number while a fifth checks 400-digit primes (about 30 ms each), on a server that "
    "tests long numbers in a separate process (the default) and on one that tests every "
    "number on its event loop, in alternating rounds; the short clients' rate beside "
    "their rate alone. Also part of python -m experiments.throughput."
)
#: (label, --prime-processes)
SERVERS = (("prime process", 1), ("event loop", 0))


@dataclass(frozen=True, kw_only=True)
class LongCheck(Record):
    """The short clients beside the long one on one server, over the rounds."""

    transport: str
    long_checks_on: str  # "prime process" or "event loop"
    short_rate: int  # answers/s to the short clients, median over rounds
    short_p50_us: int
    short_p99_us: int
    short_max_us: int | None
    long_rate: float
    short_alone_rate: int  # the short clients without the long one
    short_vs_alone: float | None
    lost: int
    bad: int


@dataclass(frozen=True)
class LongCheckSettings:
    """How long the long-checks measurement ran: rounds per server, seconds per round."""

    rounds: int
    seconds: float


@dataclass(frozen=True)
class LongChecksConfig:
    transports: tuple[str, ...]
    rounds: int
    seconds: float  # measured window per round


@functools.cache
def long_prime() -> int:
    """The smallest prime of ``MAX_DIGITS`` digits: the longest a client may send."""
    n: int = 10 ** (MAX_DIGITS - 1) + 1
    while not is_probable_prime(n):
        n += 2
    return n


async def _mixed(transport: str, port: int, seconds: float) -> tuple[Sample, Sample, Sample]:
    """(short clients beside the long one, the long one, short clients alone)."""
    # Generous timeouts: on the event loop a check can wait behind several
    # long ones (UDP would count it lost and send the next).
    short_load = service_workload("numbers", transport)
    long_load = service_workload("numbers", transport, args={"n": str(long_prime())})
    short, long = await asyncio.gather(
        drive(transport, port, short_load, SHORT_CLIENTS, seconds=seconds, timeout=2.0),
        drive(transport, port, long_load, 1, seconds=seconds, timeout=2.0),
    )
    alone = await drive(transport, port, short_load, SHORT_CLIENTS, seconds=seconds)
    return short, long, alone


def measure(transports: Sequence[str], rounds: int, seconds: float) -> list[LongCheck]:
    rows = []
    for transport in transports:
        peers = [
            (label, start_peer(label, "ours", transport, "numbers", prime_processes=processes))
            for label, processes in SERVERS
        ]
        try:
            got: dict[str, list[tuple[Sample, Sample, Sample]]] = {label: [] for label, _ in peers}
            for _ in range(rounds):  # alternating, so drift hits both alike
                for label, peer in peers:
                    got[label].append(asyncio.run(_mixed(transport, peer.port, seconds)))
        finally:
            for _, peer in peers:
                stop_peer(peer)
        rows += [_row(transport, label, samples) for label, samples in got.items()]
    return rows


def _row(transport: str, label: str, samples: list[tuple[Sample, Sample, Sample]]) -> LongCheck:
    us = sorted(x * 1e6 for short, _, _ in samples for x in short.latencies)
    short_rate = statistics.median(s.rate for s, _, _ in samples)
    alone_rate = statistics.median(a.rate for _, _, a in samples)
    return LongCheck(
        transport=transport,
        long_checks_on=label,
        short_rate=round(short_rate),
        short_p50_us=round(percentile(us, 50)),
        short_p99_us=round(percentile(us, 99)),
        short_max_us=round(us[-1]) if us else None,
        long_rate=round(statistics.median(long.rate for _, long, _ in samples), 1),
        short_alone_rate=round(alone_rate),
        short_vs_alone=round(short_rate / alone_rate, 3) if alone_rate else None,
        lost=sum(s.lost + long.lost for s, long, _ in samples),
        bad=sum(s.bad + long.bad for s, long, _ in samples),
    )


def caption(rounds: int, seconds: float) -> str:
    return (
        f"Numbers: {SHORT_CLIENTS} clients checking 2147483647 while one client checks a "
        f"{MAX_DIGITS}-digit prime, in closed loops; {rounds} alternating rounds of "
        f"{seconds} s per server. 'prime process': numbers of more than {OFFLOAD_DIGITS} "
        f"digits are tested in a separate process (serve --prime-processes 1, the default); "
        f"'event loop': every number on the server's event loop (--prime-processes 0). "
        f"Short alone: the {SHORT_CLIENTS} clients without the long one, same rounds"
    )


COLUMNS: tuple[Column[LongCheck], ...] = (
    Column("transport", lambda r: r.transport),
    Column("long checks on", lambda r: r.long_checks_on),
    Column("short rt/s", lambda r: r.short_rate),
    Column("p50 us", lambda r: r.short_p50_us),
    Column("p99 us", lambda r: r.short_p99_us),
    Column("max us", lambda r: r.short_max_us),
    Column("long rt/s", lambda r: r.long_rate),
    Column("short alone rt/s", lambda r: r.short_alone_rate),
    Column("short / alone", lambda r: r.short_vs_alone),
    Column("lost", lambda r: r.lost),
    Column("bad", lambda r: r.bad),
)


def render(rows: Sequence[LongCheck]) -> str:
    return table(rows, COLUMNS, tablefmt="github", floatfmt="g")


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser("experiments.long_checks", DESCRIPTION)
    add_list_option(
        parser,
        "--transports",
        choices=("tcp", "udp"),
        default="tcp,udp",
        help="transports to measure",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, metavar="N", help="alternating rounds per server"
    )
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="measured window per round, seconds")  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    cfg = config_from(LongChecksConfig, parser.parse_args(argv))
    if cfg.rounds < 1 or cfg.seconds <= 0:
        parser.error("--rounds and --seconds must be positive")
    rows = measure(cfg.transports, cfg.rounds, cfg.seconds)
    print(caption(cfg.rounds, cfg.seconds) + ":")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
