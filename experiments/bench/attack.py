"""What the attack benchmarks share: a bank server process, attackers in their own
processes, and the results files.

``login_flood`` and ``churn`` start ``python -m services serve bank`` (as an
operator would), run attackers as separate processes (``python -m
experiments.bench.attack MODE ...``, so their CPU is not the measuring
client's), and write ``NAME.json`` and ``NAME.md`` to ``--out``. Every loop
is bounded in time; only loopback addresses are used; processes are stopped
by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transports.framing import frame
from transports.wire import Request, encode_request

HOST = "127.0.0.1"
_PORT = re.compile(r"\[LISTENING\] \S+ on \w+://[^:]+:(\d+)")


@dataclass
class BankProcess:
    """A running ``serve bank`` process; ``stop`` measures how long SIGTERM takes."""

    proc: subprocess.Popen[str]
    port: int
    counters: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, transport: str, db: str, *args: str) -> BankProcess:
        argv = [sys.executable, "-m", "services", "serve", "bank", "--transport", transport]
        proc = subprocess.Popen(
            [*argv, "--port", "0", "--db", db, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        match = _PORT.search(proc.stdout.readline())
        if match is None:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.communicate()[1]}")
        return cls(proc, int(match.group(1)))

    def stop(self) -> float:
        """SIGTERM (by pid), then the seconds until the process exited."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        took = time.monotonic() - started
        for line in out.splitlines():
            if line.startswith("[STOPPED]"):
                for item in line.removeprefix("[STOPPED] ").split(", "):
                    key, _, value = item.partition("=")
                    if value.isdigit():
                        self.counters[key] = int(value)
        return took


def start_attacker(mode: str, port: int, seconds: float, *args: str) -> subprocess.Popen[str]:
    """``python -m experiments.bench.attack MODE PORT SECONDS ARGS``: prints its counts."""
    argv = [sys.executable, "-m", "experiments.bench.attack", mode, str(port), str(seconds)]
    return subprocess.Popen([*argv, *args], stdout=subprocess.PIPE, text=True)


def attacker_counts(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate(timeout=120)
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else {}


def _unknown_login(rng: random.Random, serial: int) -> bytes:
    args = {"account": rng.randrange(10_000, 10**9), "pin": f"{rng.randrange(10_000):04d}"}
    return encode_request(Request(f"flood-{serial}", "bank.login", args))


async def _flood_udp(
    port: int, seconds: float, rate: float, host: str, seed: int
) -> dict[str, int]:
    """``rate`` logins/s of unknown accounts from 64 source ports, replies never read
    (as from spoofed sources: they never see an address token)."""
    rng = random.Random(seed)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
    for sock in socks:
        sock.bind((host, 0))
        sock.setblocking(False)
    sent = 0
    try:
        sent = await _paced(seconds, rate, lambda n: _send_udp(socks[n % 64], rng, n, port))
    finally:
        for sock in socks:
            sock.close()
    return {"sent": sent}


def _send_udp(sock: socket.socket, rng: random.Random, n: int, port: int) -> None:
    # A full socket buffer loses the datagram, as a network would.
    with contextlib.suppress(BlockingIOError):
        sock.sendto(_unknown_login(rng, n), (HOST, port))


async def _flood_tcp(
    port: int, seconds: float, rate: float, host: str, seed: int
) -> dict[str, int]:
    """``rate`` logins/s of unknown accounts over 40 connections, replies read and dropped."""
    rng = random.Random(seed)
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.Task[int]] = []

    async def drain(reader: asyncio.StreamReader) -> int:
        got = 0
        with contextlib.suppress(ConnectionError):  # the server stopped: a reset
            while await reader.read(65536):
                got += 1
        return got

    for _ in range(40):
        reader, writer = await asyncio.open_connection(HOST, port, local_addr=(host, 0))
        writers.append(writer)
        readers.append(asyncio.create_task(drain(reader)))

    def send(n: int) -> None:
        writer = writers[n % 40]
        if not writer.is_closing():
            writer.write(frame(_unknown_login(rng, n)))

    sent = await _paced(seconds, rate, send)
    for writer in writers:
        writer.close()
    await asyncio.wait(readers, timeout=5.0)
    closed = sum(1 for w in writers if w.is_closing())
    return {"sent": sent, "connections": len(writers), "closed": closed}


async def _paced(seconds: float, rate: float, send: Any) -> int:
    """Call ``send(n)`` ``rate`` times a second for ``seconds``, in 10 ms batches."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (now := loop.time()) < start + seconds:
        due = int((now - start) * rate)
        while sent < due:
            send(sent)
            sent += 1
        await asyncio.sleep(0.01)
    return sent


def _churn(port: int, seconds: float, host: str) -> dict[str, int]:
    """Connect, send one byte, close, in a loop: never holding a connection."""
    deadline = time.monotonic() + seconds
    counts = {"connects": 0, "refused": 0}
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), 2.0, source_address=(host, 0)) as sock:
                sock.sendall(b"x")
            counts["connects"] += 1
        except OSError:
            counts["refused"] += 1
    return counts


def write_results(out: Path, name: str, record: dict[str, Any], markdown: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / name}.json and .md", file=sys.stderr)


def default_out() -> Path:
    """A run's own folder: the committed reference (results/) only with ``--out results``."""
    return Path("results") / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def environment() -> str:
    return f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.attack")
    parser.add_argument("mode", choices=("flood-udp", "flood-tcp", "churn"))
    parser.add_argument("port", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--host", default="127.0.0.2", help="loopback source address")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    seconds = min(args.seconds, 60.0)  # bounded whatever is asked
    if args.mode == "churn":
        counts = _churn(args.port, seconds, args.host)
    else:
        flood = _flood_udp if args.mode == "flood-udp" else _flood_tcp
        counts = asyncio.run(flood(args.port, seconds, args.rate, args.host, args.seed))
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
