"""Run a real server process, restart it whenever it crashes, stop it cleanly.

Role: the process manager of the crash experiment. ``Supervisor`` starts
``python -m services serve ARGS --port PORT`` (incarnation 0) and waits for
its ``[LISTENING]`` line; a background thread waits on the process and, when
it dies by SIGKILL (its own crash hook, ``services.programs.crash_hook.ProcessCrasher``),
checks the ledger file with SQLite's ``integrity_check`` while nothing has it
open, then starts incarnation 1, 2, ... on the same port and ledger. Any
other death (a real bug) is not papered over: supervision stops and
``error`` says why. ``stop`` sends SIGTERM to the current pid and waits.

Everything is bounded: restarts (``max_restarts``), the wait for each start
(``start_timeout``) and for the stop (``stop_timeout``). Each incarnation's
stdout and stderr go to files in ``log_dir`` (no pipe to drain, no deadlock);
the ``[CRASH] point op id attempt`` lines the crash hook writes just before
dying are read back by ``crashes()``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["Crash", "Supervisor", "SupervisorError", "free_port", "integrity_check"]

LISTENING = "[LISTENING]"
CRASH_LINE = "[CRASH]"
_POLL_S = 0.005  # how often a start checks its log for [LISTENING]
_START_TRIES = 3  # a restart whose bind fails (port briefly busy) is tried again


class SupervisorError(RuntimeError):
    """A server did not start, died unexpectedly or would not stop."""


class _ExitedEarly(SupervisorError):
    """The server exited before it listened (a start that may succeed if tried again)."""


@dataclass(frozen=True)
class Crash:
    """One crash, as the dying server reported it."""

    incarnation: int
    point: str  # "before-apply" | "after-apply"
    op: str
    request_id: str
    attempt: int


@dataclass
class _Incarnation:
    number: int
    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]
    out_path: Path
    err_path: Path


def free_port(host: str = "127.0.0.1", tries: int = 200) -> int:
    """A port free for both TCP and UDP right now, outside the kernel's ephemeral range.

    The supervised server's port is unbound while it is down between two
    incarnations. A port from the ephemeral range (what binding to port 0 gives)
    can then be taken by a client's own outgoing socket, or a client's TCP
    connect can connect to itself (simultaneous open), and the restarted server
    fails with "address already in use". No client socket is given a port
    below the ephemeral range, so such a port stays ours.
    """
    low, high = _PORTS_BELOW_EPHEMERAL
    span = high - low
    start = (os.getpid() * 7919) % span  # parallel jobs start apart; no seed needed
    for step in range(tries):
        port = low + (start + step * 97) % span
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            try:
                tcp.bind((host, port))
                udp.bind((host, port))
            except OSError:
                continue
            return port
    raise SupervisorError(f"no port free for both TCP and UDP after {tries} tries")


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux default 32768)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


#: Ports a supervised server may take: above the well-known and common service
#: ports, below every port the kernel hands out to clients.
_PORTS_BELOW_EPHEMERAL = (20000, max(20001, _ephemeral_low()))


def integrity_check(db: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` on ``db``, opened read-only.

    Read-only, so the check neither checkpoints nor otherwise changes the
    WAL a crashed server left: the next incarnation recovers it itself.
    """
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as err:  # cannot even check: as bad as a failed check
        return f"cannot check {db}: {err}"
    return "\n".join(str(message) for (message,) in rows)


class Supervisor:
    """Keeps one server process up across crashes; see the module docstring."""

    def __init__(
        self,
        serve_args: Sequence[str],
        *,
        port: int,
        log_dir: Path,
        db: Path | None = None,
        max_restarts: int = 200,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
    ) -> None:
        if max_restarts < 0 or not (start_timeout > 0 and stop_timeout > 0):
            raise ValueError("max_restarts must be >= 0 and the timeouts positive")
        self.serve_args = list(serve_args)
        self.port = port
        self.log_dir = log_dir
        self.db = db
        self.max_restarts = max_restarts
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self.startup_seconds = 0.0  # first start: fork to [LISTENING]
        self.restart_seconds: list[float] = []  # per restart: death noticed to [LISTENING]
        self.integrity: list[str] = []  # integrity_check(db) after every crash
        self.exit_codes: list[int] = []  # of every incarnation that ended, in order
        self.error: str | None = None  # why supervision stopped early, if it did
        self._lock = threading.Lock()  # held while (re)starting; stop waits for it
        self._stopping = False
        self._current: _Incarnation | None = None
        self._incarnations: list[_Incarnation] = []
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Start incarnation 0, wait until it listens, then watch it."""
        if self._thread is not None:
            raise SupervisorError("already started")
        began = time.monotonic()
        self._current = self._start(0)
        self.startup_seconds = time.monotonic() - began
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> int | None:
        """SIGTERM the current incarnation and wait; its exit code (None if none ran).

        0 is a clean stop. Idempotent.
        """
        with self._lock:  # never signal a process that is still starting
            self._stopping = True
            current = self._current
        code: int | None = None
        if current is not None:
            proc = current.proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()  # our own child, by its pid
                code = proc.wait(self.stop_timeout)
                self.error = self.error or f"server pid {proc.pid} ignored SIGTERM; killed"
        if self._thread is not None:
            self._thread.join(self.stop_timeout)
        for incarnation in self._incarnations:
            incarnation.out.close()
            incarnation.err.close()
        return code

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what happened --------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The current incarnation's pid."""
        return self._current.proc.pid if self._current is not None else None

    def crashes(self) -> list[Crash]:
        """Every crash the servers reported, in incarnation order."""
        found = []
        for incarnation in self._incarnations:
            for line in _read(incarnation.err_path).splitlines():
                fields = line.split()
                if len(fields) == 5 and fields[0] == CRASH_LINE and fields[4].isdigit():
                    point, op, request_id, attempt = fields[1:]
                    found.append(Crash(incarnation.number, point, op, request_id, int(attempt)))
        return found

    def log(self, incarnation: int) -> tuple[str, str]:
        """(stdout, stderr) of one incarnation so far."""
        inc = self._incarnations[incarnation]
        return _read(inc.out_path), _read(inc.err_path)

    # -- internals ------------------------------------------------------------

    def _watch(self) -> None:
        """Wait on the current incarnation; restart it after a crash."""
        while True:
            current = self._current
            assert current is not None
            code = current.proc.wait()
            died = time.monotonic()
            with self._lock:
                self.exit_codes.append(code)
                if self._stopping:
                    return
                if code != -signal.SIGKILL:
                    _, err = self.log(current.number)
                    self.error = f"incarnation {current.number} exited with {code}: {err[-500:]}"
                    return
                if self.db is not None:
                    # The moment that matters: the process is dead, nothing has
                    # the file open, and whatever SQLite committed is all there is.
                    self.integrity.append(integrity_check(self.db))
                if self.restarts >= self.max_restarts:
                    self.error = f"gave up after {self.restarts} restarts"
                    return
                self.restarts += 1
                try:
                    self._current = self._start(self.restarts)
                except SupervisorError as err:
                    self.error = str(err)
                    return
                self.restart_seconds.append(time.monotonic() - died)

    def _start(self, number: int) -> _Incarnation:
        """Start incarnation ``number``, trying again if it exits before listening."""
        for attempt in range(_START_TRIES - 1):
            incarnation = self._spawn(number, attempt)
            try:
                self._wait_listening(incarnation)
            except _ExitedEarly:
                time.sleep(0.1)  # e.g. the port not yet released: try again
                continue
            return incarnation
        incarnation = self._spawn(number, _START_TRIES - 1)
        self._wait_listening(incarnation)
        return incarnation

    def _spawn(self, number: int, attempt: int) -> _Incarnation:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"server-{number}" + (f".{attempt}" if attempt else "")
        out_path, err_path = self.log_dir / f"{stem}.out", self.log_dir / f"{stem}.err"
        out, err = out_path.open("wb"), err_path.open("wb")
        argv = [sys.executable, "-m", "services", "serve", *self.serve_args]
        argv += ["--port", str(self.port)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        incarnation = _Incarnation(number, proc, out, err, out_path, err_path)
        self._incarnations.append(incarnation)
        return incarnation

    def _wait_listening(self, incarnation: _Incarnation) -> None:
        deadline = time.monotonic() + self.start_timeout
        proc = incarnation.proc
        while time.monotonic() < deadline:
            if LISTENING in _read(incarnation.out_path):
                return
            if proc.poll() is not None:
                err = _read(incarnation.err_path)
                raise _ExitedEarly(
                    f"server exited with {proc.returncode} before listening: {err[-500:]}"
                )
            time.sleep(_POLL_S)
        proc.kill()  # our own child, by its pid: it hung before listening
        proc.wait(self.stop_timeout)
        raise SupervisorError(f"server did not listen within {self.start_timeout:g} s")


def _read(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(errors="replace")
    return ""
