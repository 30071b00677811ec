"""Real kernel faults between two network namespaces joined by a veth link.

Role: the ``kernel`` fault backend. ``NetnsPair`` creates two namespaces of our
own (``a``, the client side, and ``b``, the server side), joins them with a
veth pair and makes the kernel itself misbehave between them:

* packet loss: an nftables rule ``numgen random mod 1000000 < k drop`` where
  packets arrive in each namespace (iptables ``-m statistic --mode random`` when
  nft is missing). It drops *packets*, so TCP retransmits below the application;
* TCP resets: ``reject with tcp reset`` for a random fraction of arriving TCP
  packets (the sender's connection is aborted);
* rate limiting: ``tc qdisc ... tbf`` on both veth ends;
* delay, jitter, duplication, reordering, corruption, burst loss: ``tc netem``,
  only where the kernel has it (``probe()`` finds out at run time).

Every namespace, and with it every rule, qdisc and veth inside, is removed on
exit: also on an exception, on Ctrl-C (KeyboardInterrupt) and on SIGTERM (turned
into SystemExit while a pair is open). A process killed outright leaves its
namespaces behind; the next ``NetnsPair`` (or ``python -m transports.netns
cleanup``) removes those whose owner process is gone. Names carry the owner's pid.

``inside(name)`` moves the *calling thread* into a namespace (setns(2)); sockets
created there stay in it. An asyncio program can thus open its server socket in
``b`` and its client sockets in ``a`` within one process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence

from transports.faults import FaultSpec

# This module is the command line. The pieces live in sibling modules (the
# docstring above is also the --help text, so the layout is told here): running
# commands, the pair's lifecycle, its fault rules, the capability probe, setns.
# Every name below stays importable from transports.netns.
from transports.netns.commands import (
    CommandResult,
    NetnsError,
    Runner,
    UnsupportedFault,
    run_command,
)
from transports.netns.inside import inside
from transports.netns.pair import PREFIX, NetnsPair, Side, cleanup_stale
from transports.netns.probe import KernelSupport, probe, support
from transports.netns.rules import SCALE, TABLE, KernelRules, default_loss_tool, netem_args
from transports.progname import invoked_as

__all__ = [
    "PREFIX",
    "SCALE",
    "TABLE",
    "CommandResult",
    "KernelRules",
    "KernelSupport",
    "NetnsError",
    "NetnsPair",
    "Runner",
    "Side",
    "UnsupportedFault",
    "cleanup_stale",
    "default_loss_tool",
    "inside",
    "netem_args",
    "probe",
    "run_command",
    "support",
]


def hold(spec: FaultSpec, rate: str | None) -> int:
    """``up``: create a pair with faults, say where, wait for SIGINT/SIGTERM, clean up.

    Run any server in ``b`` and any client in ``a`` meanwhile, e.g.
    ``ip netns exec NAME_B python -m services serve bank --host 10.213.0.2``.
    """
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with NetnsPair() as pair:
        pair.apply(spec, rate=rate)
        print(
            f"[NETNS UP] client a={pair.a.netns} ({pair.a.address}), "
            f"server b={pair.b.netns} ({pair.b.address}), faults {spec}, rate {rate or 'none'}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        counts = pair.counters()
    print("[NETNS DOWN] " + json.dumps(counts, sort_keys=True), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transports.netns {probe,cleanup,up}``."""
    parser = argparse.ArgumentParser(
        prog=invoked_as("transports.netns"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=("probe", "cleanup", "up"),
        help="what works here; remove namespaces of dead processes; "
        "hold a faulty pair until interrupted",
    )
    parser.add_argument("--faults", default="", metavar="SPEC", help="for up: e.g. loss=0.1")
    parser.add_argument("--rate", help="for up: tc tbf rate limit, e.g. 10mbit")
    args = parser.parse_args(argv)
    if args.command == "cleanup":
        removed = cleanup_stale()
        print(f"removed {len(removed)} stale namespace(s)" + "".join(f"\n  {n}" for n in removed))
        return 0
    found = support()
    reason = found.skip_reason(tbf=bool(args.rate))
    if args.command == "up":
        if reason is not None:
            print(f"error: {reason}", file=sys.stderr)
            return 2
        try:
            return hold(FaultSpec.parse(args.faults), args.rate)
        except (ValueError, NetnsError) as err:  # FaultSpecError is a ValueError
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(found.describe())
    print("kernel backend: " + ("usable" if reason is None else f"unavailable: {reason}"))
    return 0 if reason is None else 1
