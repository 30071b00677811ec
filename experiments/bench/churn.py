"""``python -m experiments.bench.churn``: legitimate connections beside connection churn.

A bank server over TCP with its default limits; ``--churners`` attacker
processes (default 3) that connect, send one byte and close, in a loop, from
the same address as the legitimate client (127.0.0.1, the hard case: they share
its per-source cap); meanwhile a legitimate probe every 50 ms opens a new
connection, sends a request, reads its reply and closes. Prints and writes
(``--out``, default a run folder under results/runs/) how many probes were
answered, refused or reset, and the server's connection counters.

Target (issue 16): no legitimate connection refused or reset.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.bench.attack import (
    HOST,
    BankProcess,
    attacker_counts,
    default_out,
    environment,
    start_attacker,
    write_results,
)
from experiments.framework.results import check_writable
from transports.framing import frame
from transports.wire import Request, decode_reply, encode_request

COUNTERS = (
    "connections",
    "refused_connections",
    "refused_connections_per_source",
    "reaped_closed_connections",
)


def probe(port: int, serial: int) -> str:
    """One legitimate connection: ``answered``, ``refused``, ``reset`` or ``no reply``."""
    request_id = f"probe-{serial}"
    data = frame(encode_request(Request(request_id, "bank.balance", {"token": "none"})))
    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(data)
            header = sock.recv(4, socket.MSG_WAITALL)
            if len(header) < 4:
                return "closed by the server"
            body = sock.recv(struct.unpack(">I", header)[0], socket.MSG_WAITALL)
            return "answered" if decode_reply(body).id == request_id else "wrong reply"
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "no reply"


def measure(seconds: float, churners: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="churn-") as tmp:
        server = BankProcess.start("tcp", str(Path(tmp) / "bank.db"))
        attackers = [
            start_attacker("churn", server.port, seconds + 1.0, "--host", HOST)
            for _ in range(churners)
        ]
        probes: Counter[str] = Counter()
        try:
            time.sleep(0.5)  # the churn is on
            deadline = time.monotonic() + seconds
            serial = 0
            while time.monotonic() < deadline:
                probes[probe(server.port, serial)] += 1
                serial += 1
                time.sleep(0.05)
        finally:
            churn = [attacker_counts(a) for a in attackers]
            server.stop()
    return {
        "churners": churners,
        "seconds": seconds,
        "churn_connects": sum(c.get("connects", 0) for c in churn),
        "churn_refused": sum(c.get("refused", 0) for c in churn),
        "probes": dict(probes),
        "server": {key: server.counters.get(key, 0) for key in COUNTERS},
    }


def render(row: dict[str, Any], caption: str) -> str:
    probes = row["probes"]
    total = sum(probes.values())
    bad = total - probes.get("answered", 0)
    server = row["server"]
    return "\n".join(
        [
            "# Connection churn",
            "",
            caption,
            "",
            "| churn processes | churn connections | legitimate probes | answered "
            "| refused, reset or unanswered | target met |",
            "| ---: | ---: | ---: | ---: | ---: | --- |",
            f"| {row['churners']} | {row['churn_connects']} | {total} "
            f"| {probes.get('answered', 0)} | {bad} | {'yes' if bad == 0 else 'no'} |",
            "",
            "Server counters (from its `[STOPPED]` line): "
            + ", ".join(f"`{key}` {server[key]}" for key in COUNTERS)
            + ".",
            "",
            "Columns: *churn connections*, connections the attackers opened, sent one byte "
            "on and closed; *legitimate probes*, new connections (one every 50 ms) that "
            "sent a request and waited for its reply. `reaped_closed_connections`: slots "
            "freed because the peer had already closed when the server was full. "
            "Target: no legitimate connection refused or reset.",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench.churn",
        description="Legitimate connections beside connect/close churn (see module doc).",
    )
    parser.add_argument("--churners", type=int, default=3, help="processes (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="default 10")
    parser.add_argument("--out", type=Path, default=None, help="default: results/runs/<time>/")
    args = parser.parse_args(argv)
    if not (1 <= args.churners <= 8 and 1 <= args.seconds <= 30):
        parser.error("--churners must be 1..8 and --seconds 1..30")
    try:
        check_writable(args.out or default_out())
    except ValueError as err:
        parser.error(str(err))
    row = measure(args.seconds, args.churners)
    caption = (
        f"{args.churners} processes churning from {HOST} for {args.seconds:g} s beside a "
        f"legitimate probe every 50 ms from {HOST}; server defaults "
        f"(`python -m services serve bank`); {environment()}, shared with other work."
    )
    markdown = render(row, caption)
    print(markdown)
    write_results(args.out or default_out(), "churn", {"caption": caption, **row}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
