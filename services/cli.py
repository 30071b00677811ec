"""Command line: ``serve`` a service over a transport, or run a ``client``.

This module is the composition root: the one place in ``services`` that
imports ``transports``, to wire a service to a driver. The services themselves
know nothing of sockets.

Crash faults: ``--faults crash=P`` makes a bank server kill itself with
SIGKILL (no cleanup; only what SQLite already committed survives) at a
fraction ``P`` of the deposit and withdrawal attempts it executes, at the point
``--crash-point`` names. ``experiments.supervisor`` restarts it on the same
ledger.

``serve --workers N`` (N > 1) runs N server processes on one port
(SO_REUSEPORT, ``transports/workers.py``) to use every core; the parent prints
the one ``[LISTENING]`` line, supervises, and prints the summed counters.
Options whose guarantees live in one process are refused with N > 1
(``_check_workers``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import random
import signal
import socket
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from services import numbers, text
from services.bank import BankService
from services.base import Service
from services.ledger import Ledger
from transports import netns, workers
from transports.call import RetrySettings
from transports.client import TRANSPORTS, default_settings, start_server
from transports.driver import ServerContext, ServerLimits
from transports.endpoint import AFTER_APPLY, BEFORE_APPLY, ServerEndpoint
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import RetryPolicy
from transports.semantics import Semantics
from transports.tcp import SeedHandler
from transports.wire import Request

SERVICES = ("text", "numbers", "bank")
CLIENTS = ("text", "numbers", "atm")
DEFAULT_SEMANTICS = {"text": "at-least-once", "numbers": "at-least-once", "bank": "exactly-once"}
LOOPBACK = ("127.0.0.1", "::1", "localhost")
DISCONNECT = "!DISCONNECT"  # the lab's end-of-session message
RANDOM_POINT = "random"
CRASH_POINTS = (BEFORE_APPLY, AFTER_APPLY, RANDOM_POINT)
# Only requests that change the ledger are crash candidates: a crash around a
# login or a balance query shows nothing about duplicated money.
CRASH_OPS = frozenset({"bank.deposit", "bank.withdraw"})


class UsageError(Exception):
    """A bad option value: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services",
        description="Serve the lab's text, numbers and bank services over TCP or UDP, "
        "or talk to them with an interactive client.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,client}")

    serve = commands.add_parser("serve", help="run a server until interrupted (Ctrl-C)")
    serve.add_argument("service", choices=SERVICES)
    _add_endpoint_options(serve)
    serve.add_argument(
        "--db", metavar="PATH", help="bank ledger file (default: a fresh temporary ledger)"
    )
    serve.add_argument(
        "--framing",
        choices=("length", "seed"),
        default="length",
        help="TCP framing: our length-prefixed protocol, or the lab's 64-byte header "
        "with plain-text replies (text and numbers only)",
    )
    serve.add_argument(
        "--semantics",
        choices=[s.value for s in Semantics],
        help="call semantics the server implements (default: exactly-once for bank, "
        "at-least-once otherwise)",
    )
    serve.add_argument(
        "--fault-backend",
        choices=("in-process", "kernel"),
        default="in-process",
        help="kernel: serve inside a network namespace joined by veth to a client namespace, "
        "with the network faults done by the kernel (root, Linux; see transports/netns.py)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=f"server processes sharing the port (1..{workers.MAX_WORKERS}; default 1). "
        "With N > 1 the kernel spreads TCP connections and UDP peers across N processes "
        "(SO_REUSEPORT, Linux), one core each; the parent prints one [LISTENING] line and "
        "the summed counters. Limits (--max-connections, --max-in-flight, --threads) apply "
        "per process. Refused with N > 1: --semantics at-most-once (its reply cache is per "
        "process), --faults (not replayable across processes), --fault-backend kernel. "
        "The bank's ledger is one SQLite file shared by all (a temporary one without --db)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=4,
        metavar="N",
        help="threads per server process for blocking services (default 4)",
    )
    serve.add_argument(
        "--crash-point",
        choices=CRASH_POINTS,
        default=RANDOM_POINT,
        help="with --faults crash=P (bank): SIGKILL this server before a deposit/withdrawal "
        "is applied, after it committed but before the reply leaves, or either (50/50)",
    )
    serve.add_argument("--max-connections", type=int, default=ServerLimits.max_connections)
    serve.add_argument(
        "--frame-timeout",
        type=float,
        default=ServerLimits.frame_timeout,
        metavar="S",
        help="TCP: close a connection whose frame is unfinished S seconds after it began",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=ServerLimits.idle_timeout,
        metavar="S",
        help="TCP: close a connection silent for S seconds",
    )
    serve.add_argument(
        "--max-in-flight",
        type=int,
        default=ServerLimits.max_in_flight,
        metavar="N",
        help="requests queued or executing at once; beyond, TCP stops reading, UDP drops",
    )
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop: uvloop (libuv; the optional bench extra) is faster, notably for UDP",
    )
    serve.add_argument("--verbose", action="store_true", help="log rejected input")

    client = commands.add_parser("client", help="interactive client (also reads piped input)")
    client.add_argument("service", choices=CLIENTS)
    _add_endpoint_options(client)
    client.add_argument("--timeout", type=float, help="seconds to wait for each reply")
    client.add_argument("--attempts", type=int, help="maximum attempts per operation")
    return parser


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=TRANSPORTS, default="tcp")
    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help='fault injection, e.g. "loss=0.1,dup=0.02,delay=2ms,app_fail=0.1" '
        "(see transports/FAULTS.md)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for every fault decision")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        faults = FaultSpec.parse(args.faults)
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be 0..65535, got {args.port}")
        if args.command == "serve":
            _use_loop(args.loop)  # before any loop exists; forked workers inherit it
            if args.workers != 1:
                return serve_workers(args, faults)
            return asyncio.run(serve(args, faults))
        from services.clients import run_client

        return asyncio.run(
            run_client(
                args.service,
                args.transport,
                args.host,
                args.port,
                _client_settings(args),
                faults,
                args.seed,
            )
        )
    except (UsageError, FaultSpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _use_loop(name: str) -> None:
    """Make ``asyncio.run`` use the event loop ``name``."""
    if name == "asyncio":
        return
    try:
        import uvloop
    except ImportError as err:
        raise UsageError("--loop uvloop needs uvloop: pip install -e '.[bench]'") from err
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _client_settings(args: argparse.Namespace) -> RetrySettings:
    settings = default_settings(args.transport)
    if args.timeout is not None:
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        settings.policy = RetryPolicy.from_name(settings.policy.name, timeout=args.timeout)
    if args.attempts is not None:
        if args.attempts < 1:
            raise UsageError("--attempts must be at least 1")
        settings.max_attempts = args.attempts
    return settings


def _make_service(
    args: argparse.Namespace, faults: FaultSpec
) -> tuple[Service, Callable[[], None]]:
    """The service object and how to release what it holds."""
    if args.service == "text":
        return text.TextService(), lambda: None
    if args.service == "numbers":
        return numbers.NumbersService(), lambda: None
    try:
        ledger = Ledger(args.db, fail_probability=faults.app_fail, seed=args.seed)
    except Exception as err:  # sqlite3 errors, unreadable file, not a database
        raise UsageError(f"cannot open ledger {args.db!r}: {err}") from err
    return BankService(ledger), ledger.close


def _seed_handler(service: str) -> SeedHandler:
    """The lab's plain-text protocol for the text and numbers services."""
    if service == "text":
        return lambda line: (text.seed_reply(line), line == DISCONNECT)
    if service == "numbers":
        return lambda line: (
            ("[Disconnected]", True) if line == DISCONNECT else (numbers.seed_reply(line), False)
        )
    raise UsageError("--framing seed is only for the text and numbers services")


async def serve(args: argparse.Namespace, faults: FaultSpec) -> int:
    if args.fault_backend == "kernel":
        return await _serve_in_namespace(args, faults)
    if args.host not in LOOPBACK:
        print(f"warning: binding to {args.host}, reachable beyond this machine", file=sys.stderr)
    return await _serve(args, faults)


async def _serve_in_namespace(args: argparse.Namespace, faults: FaultSpec) -> int:
    """Serve in namespace b of a fresh veth pair; the kernel drops packets between a and b.

    The server socket is created inside b (``netns.inside`` switches only this
    thread, only while binding); application faults (``app_fail``, ``crash``)
    stay in-process. The pair and its rules are removed on exit.
    """
    reason = netns.support().skip_reason()
    if reason is not None:
        raise UsageError(f"--fault-backend kernel: {reason}")
    link = dataclasses.replace(faults, app_fail=0.0, crash=0.0)
    with netns.NetnsPair() as pair:
        try:
            pair.apply(link)
        except netns.NetnsError as err:
            raise UsageError(f"--fault-backend kernel: {err}") from err
        args.host = pair.b.address
        print(
            f"[NETNS] kernel faults [{link}] between namespaces; clients run in "
            f"{pair.a.netns}: ip netns exec {pair.a.netns} python -m services client ... "
            f"--host {pair.b.address}",
            flush=True,
        )
        in_process = FaultSpec(app_fail=faults.app_fail, crash=faults.crash)
        return await _serve(args, in_process, namespace=pair.b.netns)


class _Console:
    """What a server process tells whoever started it: on stdout, for an operator."""

    def listening(self, line: str) -> None:
        print(line, flush=True)

    def serving(self, stop: asyncio.Event) -> None:
        """Called once serving; ``stop`` ends the server."""

    def stopped(self, counters: Mapping[str, int]) -> None:
        print(_counters_line("[STOPPED]", counters), flush=True)


class _WorkerConsole(_Console):
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


async def _serve(
    args: argparse.Namespace,
    faults: FaultSpec,
    namespace: str | None = None,
    console: _Console | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Run the server until SIGINT/SIGTERM, injecting ``faults`` in-process.

    ``sock``: serve on this bound socket (a ``--workers`` worker's share of
    the port) instead of binding ``--host``/``--port``.
    """
    console = console or _Console()
    seed_handler = _seed_handler(args.service) if args.framing == "seed" else None
    limits = _limits(args)  # before the ledger opens: a bad value must not leak it
    service, release = _make_service(args, faults)
    semantics = Semantics(args.semantics or DEFAULT_SEMANTICS[args.service])
    crasher = None
    if faults.crash > 0.0:
        crasher = ProcessCrasher(faults.crash, args.crash_point, args.seed)
    endpoint = ServerEndpoint(service, semantics, crash_hook=crasher)
    stop = _stop_on_signal()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.threads)) as pool:
        context = ServerContext(
            endpoint,
            host=args.host,
            port=args.port,
            pool=pool,
            limits=limits,
            faults=None if faults.is_zero else faults,
            seed=args.seed,
            sock=sock,
            on_bad_input=(lambda what: print(f"[REJECTED] {what}", file=sys.stderr))
            if args.verbose
            else None,
        )
        try:
            with netns.inside(namespace) if namespace else contextlib.nullcontext():
                server = await start_server(args.transport, context, seed_handler)
        except OSError as err:
            release()
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from err
        console.listening(_listening_line(args, server.host, server.port, semantics, faults))
        console.serving(stop)
        await stop.wait()
        await server.close()
    release()
    console.stopped(server.context.endpoint.counters)
    return 0


def _listening_line(
    args: argparse.Namespace, host: str, port: int, semantics: Semantics, faults: FaultSpec
) -> str:
    """The one line experiments and tests parse for the port (keep its format)."""
    crashing = f", crash point {args.crash_point}" if faults.crash > 0.0 else ""
    loop = f", loop {args.loop}" if args.loop != "asyncio" else ""
    return (
        f"[LISTENING] {args.service} on {args.transport}://{host}:{port} "
        f"(semantics {semantics.value}, framing {args.framing}, faults {faults or 'none'}"
        f"{crashing}{loop})"
    )


def serve_workers(args: argparse.Namespace, faults: FaultSpec) -> int:
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
    semantics = _check_workers(args, faults)
    if args.host not in LOOPBACK:
        print(f"warning: binding to {args.host}, reachable beyond this machine", file=sys.stderr)
    if args.framing == "seed":
        _seed_handler(args.service)
        if args.transport != "tcp":
            raise UsageError("seed framing is a TCP stream format; use --transport tcp")
    _limits(args)
    temporary = None
    if args.service == "bank" and args.db is None:
        fd, temporary = tempfile.mkstemp(prefix="ledger-", suffix=".sqlite3")
        os.close(fd)
        args.db = temporary
    try:
        if args.service == "bank":
            _make_service(args, faults)[1]()  # the schema and demo accounts, once
        try:
            sockets = workers.bind_shared(args.host, args.port, args.transport, args.workers)
        except OSError as err:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {err.strerror}") from err
        port = args.port = sockets[0].getsockname()[1]  # what each worker's server binds
        started = workers.fork_workers(sockets, partial(_worker_main, args, faults))

        def announce() -> None:
            print(_listening_line(args, args.host, port, semantics, faults), flush=True)
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
        print(_counters_line(f"[WORKER {worker.index}] pid {worker.pid}:", worker.counters))
    print(_counters_line("[STOPPED]", total), flush=True)
    return 0


def _check_workers(args: argparse.Namespace, faults: FaultSpec) -> Semantics:
    """Refuse what would break a guarantee across processes; the semantics served."""
    n = args.workers
    if not 1 <= n <= workers.MAX_WORKERS:
        raise UsageError(f"--workers must be 1..{workers.MAX_WORKERS}, got {n}")
    semantics = Semantics(args.semantics or DEFAULT_SEMANTICS[args.service])
    if semantics is Semantics.AT_MOST_ONCE:
        raise UsageError(
            f"--workers {n} with --semantics at-most-once: its reply cache lives in one "
            "process, so a retry that reconnects to another worker would execute twice; "
            "use --semantics exactly-once (idempotency keys in the shared ledger) or --workers 1"
        )
    if not faults.is_zero:
        raise UsageError(
            f"--workers {n} with --faults: fault decisions are numbered per peer inside one "
            "process, so they would depend on which worker a peer reaches and a run could "
            "not be replayed; use --workers 1"
        )
    if args.fault_backend == "kernel":
        raise UsageError(f"--workers {n} with --fault-backend kernel: use --workers 1")
    return semantics


def _worker_main(
    args: argparse.Namespace, faults: FaultSpec, sock: socket.socket, link: workers.ParentLink
) -> int:
    """One forked worker: the ordinary server, on the inherited socket."""
    try:
        return asyncio.run(_serve(args, faults, console=_WorkerConsole(link), sock=sock))
    except (UsageError, ValueError) as err:
        print(f"error: worker: {err}", file=sys.stderr)
        return 2


class ProcessCrasher:
    """Crash hook: SIGKILL this process at a seeded fraction of deposits and withdrawals.

    Whether attempt ``a`` of request ``id`` crashes the server, and where, is a
    pure function of ``(seed, id, a)``: two draws from
    ``random.Random(f"{seed}/server/crash/{id}/{a}")``, crash if the first is
    below ``rate``, before apply if the second is below 0.5 (for ``random``).
    So the decisions do not depend on thread timing or on how many requests an
    earlier incarnation saw; a retry (next attempt) gets a fresh draw, so a
    restarted server does not crash on the same request forever; TCP, UDP and
    every semantics face the same draws; and a higher rate crashes at a
    superset of the attempts of a lower one (common random numbers). The
    decision is taken before apply and remembered per thread (``finish`` runs
    on one thread) for the after-apply check. ``kill`` is replaceable for tests.
    """

    def __init__(
        self,
        rate: float,
        point: str,
        seed: int,
        kill: Callable[[Request, str], None] | None = None,
    ) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"crash point must be one of {', '.join(CRASH_POINTS)}")
        self.rate = rate
        self.point = point
        self.seed = seed
        self._pending = threading.local()  # this thread's request dies after apply
        self._kill = kill or _sigkill

    def decide(self, request: Request) -> str | None:
        """Where attempt ``request.attempt`` of ``request`` crashes the server, or None."""
        rng = random.Random(f"{self.seed}/server/crash/{request.id}/{request.attempt}")
        u_crash, u_point = rng.random(), rng.random()
        if u_crash >= self.rate:
            return None
        if self.point == RANDOM_POINT:
            return BEFORE_APPLY if u_point < 0.5 else AFTER_APPLY
        return self.point

    def __call__(self, request: Request, stage: str) -> None:
        if request.op not in CRASH_OPS:
            return
        if stage == AFTER_APPLY:
            if getattr(self._pending, "doomed", False):
                self._pending.doomed = False
                self._kill(request, AFTER_APPLY)
            return
        point = self.decide(request)
        self._pending.doomed = point == AFTER_APPLY
        if point == BEFORE_APPLY:
            self._kill(request, BEFORE_APPLY)


_dying = threading.Lock()  # the first thread to crash the process is the only one


def _sigkill(request: Request, point: str) -> None:
    """Die at once, as a power cut would kill the process: no handlers, no cleanup."""
    _dying.acquire()  # a second thread deciding to crash just waits for the kill
    # One write() per line, so the supervisor reads it whole before the kill.
    line = f"[CRASH] {point} {request.op} {request.id} {request.attempt}\n"
    os.write(sys.stderr.fileno(), line.encode())
    os.kill(os.getpid(), signal.SIGKILL)


def _limits(args: argparse.Namespace) -> ServerLimits:
    try:
        return ServerLimits(
            max_connections=args.max_connections,
            frame_timeout=args.frame_timeout,
            idle_timeout=args.idle_timeout,
            max_in_flight=args.max_in_flight,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err


def _stop_on_signal() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM; installed before [LISTENING] is printed,
    so a supervisor that signals as soon as it reads that line stops us cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _counters_line(prefix: str, counters: Mapping[str, int]) -> str:
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counters.items())) or "no requests"
    return f"{prefix} {summary}"
