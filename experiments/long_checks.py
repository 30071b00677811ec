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
from typing import Any

from tabulate import tabulate

from experiments.audit import percentile
from experiments.roundtrip import (
    Peer,
    Sample,
    drive,
    service_workload,
    start_peer,
    stop_peer,
)
from services.numbers import OFFLOAD_DIGITS
from services.primes import MAX_DIGITS, is_probable_prime

SHORT_CLIENTS = 4
#: (label, --prime-processes)
SERVERS = (("prime process", 1), ("event loop", 0))


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


def measure(transports: Sequence[str], rounds: int, seconds: float) -> list[dict[str, Any]]:
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
        rows += [_row(transport, label, samples, peer) for (label, peer), samples in
                 zip(peers, got.values(), strict=True)]  # fmt: skip
    return rows


def _row(
    transport: str, label: str, samples: list[tuple[Sample, Sample, Sample]], peer: Peer
) -> dict[str, Any]:
    us = sorted(x * 1e6 for short, _, _ in samples for x in short.latencies)
    short_rate = statistics.median(s.rate for s, _, _ in samples)
    alone_rate = statistics.median(a.rate for _, _, a in samples)
    return {
        "transport": transport,
        "long_checks_on": label,
        "short_rate": round(short_rate),
        "short_p50_us": round(percentile(us, 50)),
        "short_p99_us": round(percentile(us, 99)),
        "short_max_us": round(us[-1]) if us else None,
        "long_rate": round(statistics.median(long.rate for _, long, _ in samples), 1),
        "short_alone_rate": round(alone_rate),
        "short_vs_alone": round(short_rate / alone_rate, 3) if alone_rate else None,
        "lost": sum(s.lost + long.lost for s, long, _ in samples),
        "bad": sum(s.bad + long.bad for s, long, _ in samples),
    }


def caption(rounds: int, seconds: float) -> str:
    return (
        f"Numbers: {SHORT_CLIENTS} clients checking 2147483647 while one client checks a "
        f"{MAX_DIGITS}-digit prime, in closed loops; {rounds} alternating rounds of "
        f"{seconds} s per server. 'prime process': numbers of more than {OFFLOAD_DIGITS} "
        f"digits are tested in a separate process (serve --prime-processes 1, the default); "
        f"'event loop': every number on the server's event loop (--prime-processes 0). "
        f"Short alone: the {SHORT_CLIENTS} clients without the long one, same rounds"
    )


def render(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["transport", "long checks on", "short rt/s", "p50 us", "p99 us", "max us",
               "long rt/s", "short alone rt/s", "short / alone", "lost", "bad"]  # fmt: skip
    return tabulate([list(r.values()) for r in rows], headers, tablefmt="github")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.long_checks", description=__doc__)
    parser.add_argument("--transports", default="tcp,udp")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="measured window per round")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0:
        parser.error("--rounds and --seconds must be positive")
    rows = measure(args.transports.split(","), args.rounds, args.seconds)
    print(caption(args.rounds, args.seconds) + ":")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
