"""Helpers that start real servers on loopback sockets (port 0: a free port):
in this process (``running``) or as a ``python -m services serve`` process
(``serve_process``)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from transports.aio.client import RpcClient, RunningServer, open_channel, start_server
from transports.aio.driver import ServerContext, ServerLimits
from transports.call import RetrySettings
from transports.endpoint import ServerEndpoint
from transports.retry import RetryPolicy
from transports.semantics import Semantics
from transports.service import Service


@asynccontextmanager
async def running(
    transport: str,
    service: Service,
    semantics: Semantics = Semantics.AT_LEAST_ONCE,
    limits: ServerLimits | None = None,
) -> AsyncIterator[RunningServer]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ctx = ServerContext(ServerEndpoint(service, semantics), pool=pool, limits=limits)
        server = await start_server(transport, ctx)
        try:
            yield server
        finally:
            await server.close()


def client_for(server: RunningServer, attempts: int = 4, timeout: float = 1.0) -> RpcClient:
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=timeout), max_attempts=attempts)
    return RpcClient(open_channel(server.transport, server.host, server.port), settings)


LISTENING = re.compile(r"\[LISTENING\] \S+ on \w+://[^:]+:(\d+)")


@dataclass
class Served:
    """A server process: its port, and after it stopped, its counters and stderr."""

    proc: subprocess.Popen[str]
    port: int
    banner: str = ""  # the [LISTENING] line
    counters: Counter[str] = field(default_factory=Counter)
    stderr: str = ""

    def status_kib(self, key: str) -> int:
        """A line of /proc/PID/status in KiB, e.g. VmRSS (now) or VmHWM (peak)."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        assert match, f"no {key} in /proc status"
        return int(match.group(1))

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextmanager
def serve_process(*args: str) -> Iterator[Served]:
    """``python -m services serve ARGS --port 0``; stopped by SIGTERM to its pid.

    On exit it asserts a clean stop (status 0, no traceback, a ``[STOPPED]``
    line) and parses that line's counters into ``Served.counters``.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = LISTENING.search(line)
        assert match, f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        server = Served(proc, int(match.group(1)), banner=line)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)  # by pid: only the process we started
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    server.stderr = err
    stopped = [line for line in out.splitlines() if line.startswith("[STOPPED]")]
    assert stopped, out
    for item in stopped[0].removeprefix("[STOPPED] ").split(", "):
        if "=" in item:
            key, value = item.split("=")
            server.counters[key] = int(value)
