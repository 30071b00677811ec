"""Command line: ``serve`` a service over a transport, or run a ``client``.

Only the command line lives here: the options, their checks that need no
server, and the dispatch. The work is done by ``services.programs.server`` (one server
process), ``services.programs.server_workers`` (``serve --workers N``),
``services.programs.server_faults`` (``--faults app_fail=P,crash=P``, with
``services.programs.crash_hook``) and ``services.programs.clients``. Together with
``services.programs.config`` and ``services.programs.options`` these modules are the
composition root: the part of ``services`` that imports ``transports``, to wire a
service to a driver. The services themselves know nothing of sockets.

The options become a ``ServerConfig`` or ``ClientConfig``
(``services.programs.config``) here, once; the programs take that. The names
other code imports from here (``ProcessCrasher``, ``CRASH_POINTS``,
``UsageError``, ...) are re-exported, see ``__all__``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from services import numbers
from services.programs.clients import EXIT_STATUS_HELP
from services.programs.config import ClientConfig, ServerConfig
from services.programs.crash_hook import CRASH_OPS, CRASH_POINTS, RANDOM_POINT, ProcessCrasher
from services.programs.options import UsageError
from services.programs.server import serve
from services.programs.server_workers import serve_workers
from transports.admission import AdmissionLimits
from transports.aio import workers
from transports.aio.client import TRANSPORTS, default_settings
from transports.aio.driver import ServerLimits
from transports.call import RetrySettings
from transports.docs import doc_path
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import RetryPolicy
from transports.semantics import Semantics

__all__ = [
    "CLIENTS",
    "CRASH_OPS",
    "CRASH_POINTS",
    "RANDOM_POINT",
    "SERVICES",
    "ClientConfig",
    "ProcessCrasher",
    "ServerConfig",
    "UsageError",
    "build_parser",
    "client_config",
    "client_main",
    "main",
    "serve",
    "serve_main",
    "serve_workers",
    "server_config",
]

SERVICES = ("text", "numbers", "bank")
CLIENTS = ("text", "numbers", "atm")


SERVE_HELP = "run a server until interrupted (Ctrl-C)"
CLIENT_HELP = "interactive client (also reads piped input)"
CLIENT_DESCRIPTION = (
    "Talk to a service: one line of input per operation (typed or piped). "
    "Each operation is reported as applied, not applied (a definite error), or of "
    "unknown outcome (sent, no reply: it may or may not have been applied). "
    "Ctrl-C quits at once, Ctrl-D ends the session."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services",
        description="Serve the lab's text, numbers and bank services over TCP or UDP, "
        "or talk to them with an interactive client.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,client}")
    _add_serve_arguments(commands.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP))
    _add_client_arguments(
        commands.add_parser(
            "client",
            help=CLIENT_HELP,
            description=CLIENT_DESCRIPTION,
            epilog=EXIT_STATUS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    return parser


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
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
        "with the network faults done by the kernel (root, Linux; see transports/netns/)",
    )
    serve.add_argument(
        "--fault-layer",
        action="store_true",
        help="put the fault layer in place even when no fault is configured (its links then "
        "only count messages): what the layer costs, as experiments.fault_layer measures",
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
        help="worker threads per server process for operations that may block, "
        "e.g. the bank's scrypt logins (default 4)",
    )
    serve.add_argument(
        "--prime-processes",
        type=int,
        default=1,
        metavar="N",
        help="numbers: processes per server process that test numbers of more than "
        f"{numbers.OFFLOAD_DIGITS} digits, so that a long prime (~30 ms at 400 digits) does "
        "not stall the other clients; 0 tests every number on the event loop (default 1)",
    )
    serve.add_argument(
        "--crash-point",
        choices=CRASH_POINTS,
        default=RANDOM_POINT,
        help="with --faults crash=P (bank): SIGKILL this server before a deposit/withdrawal "
        "is applied, after it committed but before the reply leaves, or either (50/50)",
    )
    serve.add_argument("--max-connections", type=int, default=ServerLimits.max_connections)
    # Per-source connections and the login admission (docs/SECURITY.md, "Limits").
    admission = AdmissionLimits
    for flag, kind, default, metavar, text in (
        ("--max-connections-per-source", int, ServerLimits.max_connections_per_source, "N",
         "TCP: connections from one host at once; further ones are closed at once"),
        ("--login-threads", int, 2, "N",
         "threads for logins (scrypt), apart from --threads, so a login flood cannot hold up "
         "other operations"),
        ("--login-queue", int, admission.max_outstanding, "N",
         "logins running or waiting at once (one per connection or UDP source port); "
         "beyond, a login is refused at once with BUSY"),
        ("--login-queue-per-host", int, admission.max_per_host, "N",
         "of those, at most N from one host, so other hosts keep the rest"),
        ("--login-rate", float, admission.flow_rate, "R",
         "logins per second per connection or UDP source port, bursts of 2R"),
    ):  # fmt: skip
        serve.add_argument(
            flag, type=kind, default=default, metavar=metavar, help=f"{text} (default {default:g})"
        )
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


def _add_client_arguments(client: argparse.ArgumentParser) -> None:
    client.add_argument("service", choices=CLIENTS)
    _add_endpoint_options(client)
    client.add_argument("--timeout", type=float, help="seconds to wait for each reply")
    client.add_argument("--attempts", type=int, help="maximum attempts per operation")


def _add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transport", choices=TRANSPORTS, default="tcp")
    parser.add_argument("--host", default="127.0.0.1", help="default: loopback only")
    parser.add_argument("--port", type=int, default=5050)
    parser.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help='fault injection, e.g. "loss=0.1,dup=0.02,delay=2ms,app_fail=0.1"; '
        f"the faults: {doc_path('FAULTS.md')}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for every fault decision")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m services``: serve or client."""
    return _run(build_parser().parse_args(argv))


def serve_main(argv: Sequence[str] | None = None) -> int:
    """The ``testbed-serve`` console script: ``python -m services serve``."""
    parser = argparse.ArgumentParser(prog="testbed-serve", description=SERVE_HELP)
    _add_serve_arguments(parser)
    return _run(parser.parse_args(argv, argparse.Namespace(command="serve")))


def client_main(argv: Sequence[str] | None = None) -> int:
    """The ``testbed-client`` console script: ``python -m services client``."""
    parser = argparse.ArgumentParser(
        prog="testbed-client",
        description=CLIENT_DESCRIPTION,
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_client_arguments(parser)
    return _run(parser.parse_args(argv, argparse.Namespace(command="client")))


def _run(args: argparse.Namespace) -> int:
    """Carry out the parsed command line; the exit status."""
    try:
        if args.command == "serve":
            config = server_config(args)
            _use_loop(config.loop)  # before any loop exists; forked workers inherit it
            if config.workers != 1:
                return serve_workers(config)
            return asyncio.run(serve(config))
        from services.programs.clients import run_client

        client = client_config(args)
        return asyncio.run(run_client(client, _client_settings(client)))
    except (UsageError, FaultSpecError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "client":
            print("\ninterrupted", file=sys.stderr)
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


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The parsed ``serve`` options as a ``ServerConfig``; UsageError for what needs no server."""
    faults, port = _endpoint_options(args)
    if args.prime_processes < 0:
        raise UsageError(f"--prime-processes must be 0 or more, got {args.prime_processes}")
    return ServerConfig(
        service=args.service,
        transport=args.transport,
        host=args.host,
        port=port,
        faults=faults,
        seed=args.seed,
        db=args.db,
        framing=args.framing,
        semantics=Semantics(args.semantics) if args.semantics else None,
        fault_backend=args.fault_backend,
        fault_layer=args.fault_layer,
        workers=args.workers,
        threads=args.threads,
        prime_processes=args.prime_processes,
        crash_point=args.crash_point,
        max_connections=args.max_connections,
        max_connections_per_source=args.max_connections_per_source,
        login_threads=args.login_threads,
        login_queue=args.login_queue,
        login_queue_per_host=args.login_queue_per_host,
        login_rate=args.login_rate,
        frame_timeout=args.frame_timeout,
        idle_timeout=args.idle_timeout,
        max_in_flight=args.max_in_flight,
        loop=args.loop,
        verbose=args.verbose,
    )


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The parsed ``client`` options as a ``ClientConfig``."""
    faults, port = _endpoint_options(args)
    return ClientConfig(
        service=args.service,
        transport=args.transport,
        host=args.host,
        port=port,
        faults=faults,
        seed=args.seed,
        timeout=args.timeout,
        attempts=args.attempts,
    )


def _endpoint_options(args: argparse.Namespace) -> tuple[FaultSpec, int]:
    """``--faults`` parsed and ``--port`` checked (FaultSpecError, UsageError)."""
    faults = FaultSpec.parse(args.faults)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    return faults, int(args.port)


def _client_settings(config: ClientConfig) -> RetrySettings:
    settings = default_settings(config.transport)
    if config.timeout is not None:
        if config.timeout <= 0:
            raise UsageError("--timeout must be positive")
        settings.policy = RetryPolicy.from_name(settings.policy.name, timeout=config.timeout)
    if config.attempts is not None:
        if config.attempts < 1:
            raise UsageError("--attempts must be at least 1")
        settings.max_attempts = config.attempts
    return settings
