"""Run one server process: a service wired to a transport, until SIGINT/SIGTERM.

``serve`` is ``python -m services serve`` with one process; ``run_server`` is
the server itself, which each ``--workers`` worker also runs
(``services.programs.server_workers``), with a ``Console`` saying where its output
goes. Both take a ``ServerConfig``. It builds the service (the bank's SQLite
ledger, with the injected application failures), the endpoint with its call
semantics and crash hook (the config's ``ServerFaults``), and the transport's
``ServerContext`` with the config's ``LinkFaults`` (looked up here at run
time: ``experiments.roundtrip`` replaces it to add a zero-fault layer), and
prints the ``[LISTENING]`` and ``[STOPPED]`` lines experiments parse.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping

from services import numbers, text
from services.bank import BankService
from services.ledger import Ledger
from services.prime_processes import PrimeProcesses
from services.programs.config import ServerConfig
from services.programs.options import (
    UsageError,
    admission_limits,
    served_semantics,
    server_limits,
    warn_if_exposed,
)
from services.programs.server_faults import app_failures, crash_hook
from transports import netns
from transports.admission import Admission
from transports.aio.client import start_server
from transports.aio.driver import ServerContext
from transports.aio.tcp import SeedHandler
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpec
from transports.semantics import Semantics
from transports.service import Service

__all__ = [
    "DISCONNECT",
    "Console",
    "cannot_listen",
    "counters_line",
    "listening_line",
    "make_seed_handler",
    "make_service",
    "run_server",
    "serve",
]

DISCONNECT = "!DISCONNECT"  # the lab's end-of-session message


def make_service(config: ServerConfig) -> tuple[Service, Callable[[], None]]:
    """The service object and how to release what it holds.

    The bank's ledger fails deposits and withdrawals as the config's ``app_fail`` says.
    """
    if config.service == "text":
        return text.TextService(), lambda: None
    if config.service == "numbers":
        if config.prime_processes == 0:
            return numbers.NumbersService(), lambda: None
        primes = PrimeProcesses(config.prime_processes)
        return numbers.NumbersService(primes.is_prime), primes.close
    fault_point = app_failures(config.faults.server, config.seed)
    try:
        ledger = Ledger(config.db, fault_point=fault_point)
    except Exception as err:  # sqlite3 errors, unreadable file, not a database
        raise UsageError(f"cannot open ledger {config.db!r}: {err}") from err
    # With --workers N, N processes write the one ledger file.
    return BankService(ledger, ledger_shared=config.workers > 1), ledger.close


def make_seed_handler(service: str) -> SeedHandler:
    """The lab's plain-text protocol for the text and numbers services."""
    if service == "text":
        return lambda line: (text.seed_reply(line), line == DISCONNECT)
    if service == "numbers":
        return lambda line: (
            ("[Disconnected]", True) if line == DISCONNECT else (numbers.seed_reply(line), False)
        )
    raise UsageError("--framing seed is only for the text and numbers services")


async def serve(config: ServerConfig) -> int:
    if config.fault_backend == "kernel":
        return await _serve_in_namespace(config)
    warn_if_exposed(config.host)
    return await run_server(config)


async def _serve_in_namespace(config: ServerConfig) -> int:
    """Serve in namespace b of a fresh veth pair; the kernel drops packets between a and b.

    The server socket is created inside b (``netns.inside`` switches only this
    thread, only while binding); application faults (``app_fail``, ``crash``)
    stay in-process. The pair and its rules are removed on exit.
    """
    reason = netns.support().skip_reason()
    if reason is not None:
        raise UsageError(f"--fault-backend kernel: {reason}")
    link = FaultSpec.of(link=config.faults.link)
    with netns.NetnsPair() as pair:
        try:
            pair.apply(link)
        except netns.NetnsError as err:
            raise UsageError(f"--fault-backend kernel: {err}") from err
        print(
            f"[NETNS] kernel faults [{link}] between namespaces; clients run in "
            f"{pair.a.netns}: ip netns exec {pair.a.netns} python -m services client ... "
            f"--host {pair.b.address}",
            flush=True,
        )
        in_process = FaultSpec.of(server=config.faults.server)
        served = dataclasses.replace(config, host=pair.b.address, faults=in_process)
        return await run_server(served, namespace=pair.b.netns)


class Console:
    """What a server process tells whoever started it: on stdout, for an operator."""

    def listening(self, line: str) -> None:
        print(line, flush=True)

    def serving(self, stop: asyncio.Event) -> None:
        """Called once serving; ``stop`` ends the server."""

    def stopped(self, counters: Mapping[str, int]) -> None:
        print(counters_line("[STOPPED]", counters), flush=True)


async def run_server(
    config: ServerConfig,
    namespace: str | None = None,
    console: Console | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Run the server until SIGINT/SIGTERM, injecting ``config.faults`` in-process.

    ``sock``: serve on this bound socket (a ``--workers`` worker's share of
    the port) instead of binding ``--host``/``--port``.
    """
    console = console or Console()
    seed_handler = make_seed_handler(config.service) if config.framing == "seed" else None
    limits = server_limits(config)  # before the ledger opens: a bad value must not leak it
    admission = Admission(admission_limits(config))
    service, release = make_service(config)
    semantics = served_semantics(config)
    crasher = crash_hook(config.faults.server, config.crash_point, config.seed)
    endpoint = ServerEndpoint(
        service, semantics, crash_hook=crasher, admission=admission, wall_clock=time.time
    )
    link = config.faults.link
    stop = _stop_on_signal()
    pool = concurrent.futures.ThreadPoolExecutor(max(1, config.threads))
    logins = concurrent.futures.ThreadPoolExecutor(config.login_threads)
    try:
        context = ServerContext(
            endpoint,
            host=config.host,
            port=config.port,
            pool=pool,
            expensive_pool=logins,
            limits=limits,
            faults=link if config.fault_layer or not link.is_zero else None,
            seed=config.seed,
            sock=sock,
            on_bad_input=(lambda what: print(f"[REJECTED] {what}", file=sys.stderr))
            if config.verbose
            else None,
        )
        try:
            with netns.inside(namespace) if namespace else contextlib.nullcontext():
                server = await start_server(config.transport, context, seed_handler)
        except OSError as err:
            release()
            raise cannot_listen(config, err) from err
        console.listening(listening_line(config, server.host, server.port, semantics))
        console.serving(stop)
        await stop.wait()
        await server.close()
    finally:
        # Stopping does not wait for queued work (a login flood's backlog):
        # what has not started is dropped, what runs (one scrypt per thread) ends.
        for executor in (logins, pool):
            executor.shutdown(wait=True, cancel_futures=True)
        # Admitted logins still holding a place never ran: dropped, not answered.
        if admission.outstanding:
            endpoint.count("dropped_shutdown", admission.outstanding)
    release()
    console.stopped(server.context.endpoint.counters)
    return 0


def cannot_listen(config: ServerConfig, err: OSError) -> UsageError:
    return UsageError(f"cannot listen on {config.host}:{config.port}: {err.strerror}")


def listening_line(config: ServerConfig, host: str, port: int, semantics: Semantics) -> str:
    """The one line experiments and tests parse for the port (keep its format)."""
    crashing = f", crash point {config.crash_point}" if config.faults.crash > 0.0 else ""
    loop = f", loop {config.loop}" if config.loop != "asyncio" else ""
    return (
        f"[LISTENING] {config.service} on {config.transport}://{host}:{port} "
        f"(semantics {semantics.value}, framing {config.framing}, faults {config.faults}"
        f"{crashing}{loop})"
    )


def counters_line(prefix: str, counters: Mapping[str, int]) -> str:
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "no requests"
    return f"{prefix} {summary}"


def _stop_on_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; installed before [LISTENING] is printed,
    so a supervisor that signals as soon as it reads that line stops us cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
