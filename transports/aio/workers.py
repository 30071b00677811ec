"""Several server processes on one port: SO_REUSEPORT sockets, forked workers, a supervisor.

Why: one asyncio process runs on one core. The parent binds ``N`` sockets to
one address with ``SO_REUSEPORT`` (Linux 3.9+) and forks a worker per socket;
the kernel spreads TCP connections and UDP 4-tuples over the sockets, as
nginx's ``reuseport`` does: no accept lock, no fd passing, no proxy. Each
worker runs the unchanged single-process server on its own socket.

Why ``os.fork``: the caller forks before any event loop, thread or database
connection exists, so a child is a clean copy already holding the parsed
options and its socket; ``subprocess`` + ``pass_fds`` would re-import
everything and need the options turned back into argv. A child never returns
into the parent's code: it ends in ``os._exit``.

Parent and worker share a socketpair: the worker sends a JSON line when it
serves and one with its counters when it stops; EOF means it is gone. EOF on
the worker's end means the parent died (even by SIGKILL): the worker stops.

Each worker serves on its inherited socket (``ServerContext(sock=...)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_WORKERS = 64
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_CRASHED = 70  # EX_SOFTWARE: a worker's unexpected exception


def bind_shared(host: str, port: int, transport: str, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``host:port`` with SO_REUSEPORT (port 0: the first picks).

    The address is first bound once without SO_REUSEPORT (then released): that
    fails if anything holds the port, as a single-process server's bind would,
    where a SO_REUSEPORT bind would silently share the port with another
    server of the same user still running. TCP sockets listen at once, so a
    connection that arrives before its worker's loop runs waits in the backlog
    (asyncio listens again with the driver's backlog).
    """
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    family, _, _, _, address = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)[0]
    made: list[socket.socket] = []
    try:
        for reuse_port in (False, *[True] * count):
            sock = socket.socket(family, kind)
            made.append(sock)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio does
            sock.bind(address)
            address = sock.getsockname()  # port 0: the port the probe got
            if not reuse_port:
                made.pop().close()  # the probe: the port was free
            elif kind == socket.SOCK_STREAM:
                sock.listen()
    except BaseException:
        for sock in made:
            sock.close()
        raise
    return made


class ParentLink:
    """A worker's end of its socketpair with the parent."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def ready(self) -> None:
        self._send({"ready": True})

    def finished(self, counters: Mapping[str, int]) -> None:
        self._send({"counters": dict(counters)})

    def on_parent_gone(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the running loop when the parent's end closes."""
        loop, fd = asyncio.get_running_loop(), self._sock.fileno()

        def readable() -> None:
            try:
                data = self._sock.recv(64, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:  # the parent never writes: anything readable is EOF
                loop.remove_reader(fd)
                callback()

        loop.add_reader(fd, readable)

    def _send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # parent gone: nobody to tell
            self._sock.sendall(json.dumps(message).encode() + b"\n")


@dataclass
class Worker:
    """A forked worker as the parent sees it."""

    index: int
    pid: int
    channel: socket.socket
    ready: bool = False
    counters: Counter[str] | None = None
    status: int | None = None  # os.waitpid status once reaped

    def __str__(self) -> str:
        return f"worker {self.index} (pid {self.pid})"

    def describe(self) -> str:
        if self.status is None:
            return "still running"
        code = os.waitstatus_to_exitcode(self.status)
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"


def fork_workers(
    sockets: list[socket.socket], main: Callable[[socket.socket, ParentLink], int]
) -> list[Worker]:
    """Fork one worker per socket, running ``main(sock, link)``; close the parent's sockets.

    SIGINT and SIGTERM are blocked before forking, so neither parent nor worker
    can die of one before its handlers exist; each unblocks them once it has
    handlers (``unblock_stop_signals``).
    """
    block_stop_signals()
    workers: list[Worker] = []
    try:
        for index, sock in enumerate(sockets):
            parent_end, child_end = socket.socketpair()
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                code = _CRASHED
                try:
                    parent_end.close()
                    for other in workers:
                        other.channel.close()  # else EOF would never reach that worker
                    for other_sock in sockets:
                        if other_sock is not sock:
                            other_sock.close()
                    code = main(sock, ParentLink(child_end))
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            child_end.close()
            workers.append(Worker(index + 1, pid, parent_end))
    except BaseException:
        for worker in workers:
            worker.channel.close()  # each stops when it sees EOF
            worker.status = os.waitpid(worker.pid, 0)[1]
        raise
    finally:
        for sock in sockets:
            sock.close()
    return workers


def block_stop_signals() -> None:
    """Hold SIGINT and SIGTERM pending (a process about to exit discards them)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@dataclass
class Outcome:
    """How supervision ended: an error (None: a clean stop) and notes for the operator."""

    error: str | None = None
    notes: list[str] = field(default_factory=list)


async def supervise(
    workers: list[Worker],
    on_ready: Callable[[], None],
    *,
    startup: float = 60.0,
    grace: float = 10.0,
) -> Outcome:
    """Wait until every worker serves, call ``on_ready``, then wait for a stop or a death.

    A stop signal (SIGINT, SIGTERM) is passed on to every worker as SIGTERM.
    A worker that ends without sending its counters (killed, crashed, failed
    to start) is an error. Either way, and also when one worker stopped
    cleanly on its own (someone signalled it), the others are stopped: the
    server stops whole, never half. Workers still running ``grace`` s later
    are killed (an error). Every worker is reaped before this returns.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    signalled: list[int] = []

    def on_signal(sig: int) -> None:
        signalled.append(sig)
        wake.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    unblock_stop_signals()
    followers = [asyncio.create_task(_follow(w, wake)) for w in workers]
    outcome = Outcome()
    deadline = loop.time() + startup

    def gone() -> list[Worker]:
        return [w for w, f in zip(workers, followers, strict=True) if f.done()]

    while not (signalled or gone() or all(w.ready for w in workers)):
        wake.clear()
        if loop.time() >= deadline:
            outcome.error = f"workers not serving after {startup:.0f} s"
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), deadline - loop.time())
    if not (outcome.error or signalled or gone()):
        on_ready()
        while not (signalled or gone()):
            wake.clear()
            await wake.wait()
    for worker in gone():  # ended on their own: why?
        _reap(worker)
        if worker.counters is None:
            outcome.error = outcome.error or f"{worker} {worker.describe()}"
        else:
            outcome.notes.append(f"{worker} stopped before the parent was asked to")
    for worker, follower in zip(workers, followers, strict=True):
        if not follower.done():
            os.kill(worker.pid, signal.SIGTERM)  # alive: its channel is still open
    _, pending = await asyncio.wait(followers, timeout=grace)
    for worker, follower in zip(workers, followers, strict=True):
        if follower in pending:
            os.kill(worker.pid, signal.SIGKILL)
            outcome.error = outcome.error or f"{worker} did not stop within {grace:.0f} s"
    await asyncio.wait(followers)  # a killed worker's channel closes at once
    for worker in workers:
        _reap(worker)
        if outcome.error is None and (worker.counters is None or worker.status != 0):
            outcome.error = f"{worker} {worker.describe()}"
    # Stopped: a late stop signal is moot, and must not hit the default action
    # (or asyncio's handler once the loop closed). The caller is about to exit.
    block_stop_signals()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
    return outcome


def _reap(worker: Worker) -> None:
    if worker.status is None:
        worker.status = os.waitpid(worker.pid, 0)[1]  # its channel closed: it is exiting


async def _follow(worker: Worker, wake: asyncio.Event) -> None:
    """Read a worker's messages until its end of the channel closes."""
    reader, writer = await asyncio.open_connection(sock=worker.channel)
    try:
        while line := await reader.readline():
            message = json.loads(line)
            worker.ready = worker.ready or bool(message.get("ready"))
            if "counters" in message:
                worker.counters = Counter(message["counters"])
            wake.set()
    except (OSError, ValueError):
        pass  # a garbled channel: treated as the worker's end
    finally:
        writer.close()
        wake.set()
