"""``serve --workers N`` (N > 1): N server processes on one port, to use every core.

The processes share the port through SO_REUSEPORT; the forking, the parent
link and the supervision are ``transports/aio/workers.py``. This module is what
the service side adds: it checks the options in the parent before any process
exists, refusing those whose guarantees live in one process
(``_check_workers``); each worker runs the ordinary ``run_server`` on its
inherited socket; the parent prints the one ``[LISTENING]`` line and the
summed counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from functools import partial

from services.programs.config import ServerConfig
from services.programs.options import (
    UsageError,
    admission_limits,
    served_semantics,
    server_limits,
    warn_if_exposed,
)
from services.programs.server import (
    Console,
    cannot_listen,
    counters_line,
    listening_line,
    make_seed_handler,
    make_service,
    run_server,
)
from transports.aio import workers
from transports.semantics import Semantics

__all__ = ["serve_workers"]


def serve_workers(config: ServerConfig) -> int:
    """``serve --workers N``, N > 1: N forked server processes on one SO_REUSEPORT port.

    Everything that can fail for a bad option fails here, in the parent, as a
    UsageError before any process exists. A bank without ``--db`` gets one
    temporary ledger shared by the workers (not one each), created here
    before the fork so the workers do not race to create its schema; the
    parent closes it before forking (no SQLite connection crosses a fork),
    each worker opens its own connections, and the parent deletes it at the end.
    Once supervision ended the parent keeps SIGINT and SIGTERM blocked: it is
    printing the counters and exiting, and a late stop signal changes nothing.
    """
    semantics = _check_workers(config)
    warn_if_exposed(config.host)
    if config.framing == "seed":
        make_seed_handler(config.service)
        if config.transport != "tcp":
            raise UsageError("seed framing is a TCP stream format; use --transport tcp")
    server_limits(config)
    admission_limits(config)
    temporary = None
    if config.service == "bank" and config.db is None:
        fd, temporary = tempfile.mkstemp(prefix="ledger-", suffix=".sqlite3")
        os.close(fd)
        config = dataclasses.replace(config, db=temporary)
    try:
        if config.service == "bank":
            make_service(config)[1]()  # the schema and demo accounts, once
        try:
            sockets = workers.bind_shared(
                config.host, config.port, config.transport, config.workers
            )
        except OSError as err:
            raise cannot_listen(config, err) from err
        port = sockets[0].getsockname()[1]
        config = dataclasses.replace(config, port=port)  # what each worker's server binds
        started = workers.fork_workers(sockets, partial(_worker_main, config))

        def announce() -> None:
            print(listening_line(config, config.host, port, semantics), flush=True)
            pids = " ".join(str(w.pid) for w in started)
            print(f"[WORKERS] {len(started)} processes on port {port}: pids {pids}", flush=True)

        outcome = asyncio.run(workers.supervise(started, announce))
    finally:
        if temporary is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary + suffix)
    for note in outcome.notes:
        print(f"note: {note}; stopped the others", file=sys.stderr)
    if outcome.error is not None:
        print(f"error: {outcome.error}; stopped the other workers", file=sys.stderr, flush=True)
        return 1
    total: Counter[str] = Counter()
    for worker in started:
        assert worker.counters is not None  # a clean outcome has every worker's counters
        total.update(worker.counters)
        print(counters_line(f"[WORKER {worker.index}] pid {worker.pid}:", worker.counters))
    print(counters_line("[STOPPED]", total), flush=True)
    return 0


def _check_workers(config: ServerConfig) -> Semantics:
    """Refuse what would break a guarantee across processes; the semantics served."""
    n = config.workers
    if not 1 <= n <= workers.MAX_WORKERS:
        raise UsageError(f"--workers must be 1..{workers.MAX_WORKERS}, got {n}")
    semantics = served_semantics(config)
    if semantics is Semantics.AT_MOST_ONCE:
        raise UsageError(
            f"--workers {n} with --semantics at-most-once: its reply cache lives in one "
            "process, so a retry that reconnects to another worker would execute twice; "
            "use --semantics exactly-once (idempotency keys in the shared ledger) or --workers 1"
        )
    if not config.faults.is_zero:
        raise UsageError(
            f"--workers {n} with --faults: fault decisions are numbered per peer inside one "
            "process, so they would depend on which worker a peer reaches and a run could "
            "not be replayed; use --workers 1"
        )
    if config.fault_backend == "kernel":
        raise UsageError(f"--workers {n} with --fault-backend kernel: use --workers 1")
    return semantics


class _WorkerConsole(Console):
    """A worker of ``--workers N`` tells its parent instead, over ``link``."""

    def __init__(self, link: workers.ParentLink) -> None:
        self.link = link

    def listening(self, line: str) -> None:
        self.link.ready()

    def serving(self, stop: asyncio.Event) -> None:
        self.link.on_parent_gone(stop.set)  # no worker outlives its parent
        # Ctrl-C signals the whole process group: only the parent acts on it
        # (it passes SIGTERM on), so the workers do not race it to stop.
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        workers.unblock_stop_signals()  # blocked since before fork; handlers exist now

    def stopped(self, counters: Mapping[str, int]) -> None:
        # Stopping already: a second SIGTERM (to the group, then from the parent)
        # must not reach the handler while the loop closes its wakeup fd.
        workers.block_stop_signals()
        self.link.finished(counters)


def _worker_main(config: ServerConfig, sock: socket.socket, link: workers.ParentLink) -> int:
    """One forked worker: the ordinary server, on the inherited socket."""
    try:
        return asyncio.run(run_server(config, console=_WorkerConsole(link), sock=sock))
    except (UsageError, ValueError) as err:
        print(f"error: worker: {err}", file=sys.stderr)
        return 2
