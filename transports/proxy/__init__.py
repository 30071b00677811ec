"""``python -m transports.proxy``: a seeded fault proxy between unmodified programs.

Role: put the fault plan of ``transports.faults`` between a client and a server
that know nothing of it (the lab's own clients, anything else that speaks TCP
or UDP). It listens on ``--listen``, opens one upstream connection (TCP) or one
upstream socket (UDP) per client, and passes traffic both ways through a
``FaultLink`` per direction, so every decision is seeded and reproducible.
Documentation: docs/FAULT_PROXY.md.

* TCP: a "message" is whatever one ``read()`` returned (TCP has no message
  boundaries), or with ``--framing length`` one frame of our length-prefixed
  protocol. Links run in stream mode: loss or ``reset`` resets *both* sides
  (RST: SO_LINGER 0), delay/jitter keep FIFO order, dup and reorder are absorbed.
  Proxy-only options: ``--stall P`` (the direction stops for ``--stall-time``
  before this message), ``--slice N`` (write in random pieces of 1..N bytes,
  ``--slice-delay`` apart). Labels ``conn{i}/request|reply``, i in arrival order.
* UDP: a message is a datagram; links run in datagram mode (drop, dup, reorder,
  delay, corrupt). One session per client address with its own upstream socket;
  labels ``session{i}/request|reply``. Sessions expire after ``--idle-timeout``.

On SIGINT or SIGTERM it prints a counter summary per direction and exits 0.

This module is the command line. The pieces: ``transports.proxy.config``
(settings, addresses), ``transports.proxy.stats`` (counters, summary),
``transports.proxy.tcp`` and ``transports.proxy.udp`` (the relays) and
``transports.proxy.server`` (``FaultProxy``, which runs them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Sequence

from transports.docs import doc_path
from transports.faults import FaultSpec, FaultSpecError
from transports.progname import invoked_as

# The pieces live in sibling modules; the names below stay importable from here.
from transports.proxy.config import REPLY, REQUEST, ProxyConfig, describe, parse_address
from transports.proxy.server import FaultProxy
from transports.proxy.stats import ProxyStats

__all__ = ["FaultProxy", "ProxyConfig", "ProxyStats", "main", "parse_address"]


# fmt: off
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=invoked_as("transports.proxy"),
        description="Seeded fault proxy between an unmodified client and server "
        "(guide: docs/FAULT_PROXY.md in the source repository). Prints a counter summary "
        "on SIGINT/SIGTERM.",
    )
    p.add_argument("--transport", choices=("tcp", "udp"), required=True)
    p.add_argument("--listen", type=parse_address, required=True, metavar="HOST:PORT",
                   help="where clients connect (port 0: a free port, printed on start)")
    p.add_argument("--upstream", type=parse_address, required=True, metavar="HOST:PORT")
    p.add_argument("--faults", default="", metavar="SPEC",
                   help="fault spec, e.g. loss=0.1,dup=0.05,delay=5ms; the faults: "
                   f"{doc_path('FAULTS.md')}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stall", type=float, default=0.0, metavar="P",
                   help="TCP: probability per message that its direction stalls first")
    p.add_argument("--stall-time", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--slice", type=int, default=0, dest="slice_size", metavar="N",
                   help="TCP: forward in random writes of 1..N bytes")
    p.add_argument("--slice-delay", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--slice-dir", choices=("both", REQUEST, REPLY), default="both")
    p.add_argument("--framing", choices=("chunk", "length"), default="chunk",
                   help="TCP: a message is one read (chunk) or one length-prefixed frame")
    p.add_argument("--max-connections", type=int, default=256,
                   help="TCP connections or UDP sessions at once")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS")
    return p
# fmt: on


async def run(config: ProxyConfig) -> str:
    """Run until SIGINT/SIGTERM; return the counter summary."""
    # The handlers go in before [PROXY LISTENING] is printed, so that a
    # supervisor (or a user) signalling as soon as it reads that line stops the
    # proxy cleanly instead of interrupting asyncio.run with a traceback.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    proxy = FaultProxy(config)
    await proxy.start()
    host = config.listen[0]
    bound = _with_port(config, proxy.port)
    print(f"[PROXY LISTENING] {describe(bound)}", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: listening on {host}, reachable beyond this machine", file=sys.stderr)
    await stop.wait()
    await proxy.close()
    return proxy.stats.summary(bound)


def _with_port(config: ProxyConfig, port: int) -> ProxyConfig:
    return dataclasses.replace(config, listen=(config.listen[0], port))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fields = {f.name for f in dataclasses.fields(ProxyConfig)} - {"faults"}
        config = ProxyConfig(
            faults=FaultSpec.parse(args.faults), **{k: getattr(args, k) for k in fields}
        )
        summary = asyncio.run(run(config))
    except (FaultSpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot listen on {args.listen[0]}:{args.listen[1]}: {err}", file=sys.stderr)
        return 2
    print(summary, flush=True)
    return 0
