"""Serve options turned into checked values; ``UsageError`` for a bad one.

Shared by the single-process server (``services.programs.server``) and ``serve
--workers N`` (``services.programs.server_workers``), which must refuse a bad value the
same way: the workers' parent checks everything before it forks, so no worker
is left to fail on an option.
"""

from __future__ import annotations

import sys

from services.programs.config import ServerConfig
from transports.admission import AdmissionLimits
from transports.aio.driver import ServerLimits
from transports.semantics import Semantics

__all__ = [
    "DEFAULT_SEMANTICS",
    "LOOPBACK",
    "UsageError",
    "admission_limits",
    "served_semantics",
    "server_limits",
    "warn_if_exposed",
]

DEFAULT_SEMANTICS = {"text": "at-least-once", "numbers": "at-least-once", "bank": "exactly-once"}
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class UsageError(Exception):
    """A bad option value: printed as one line, exit status 2."""


def served_semantics(config: ServerConfig) -> Semantics:
    """``--semantics``, or the service's default."""
    if config.semantics is not None:
        return config.semantics
    return Semantics(DEFAULT_SEMANTICS[config.service])


def server_limits(config: ServerConfig) -> ServerLimits:
    try:
        return ServerLimits(
            max_connections=config.max_connections,
            max_connections_per_source=config.max_connections_per_source,
            frame_timeout=config.frame_timeout,
            idle_timeout=config.idle_timeout,
            max_in_flight=config.max_in_flight,
        )
    except ValueError as err:
        raise UsageError(str(err)) from err


def admission_limits(config: ServerConfig) -> AdmissionLimits:
    """The login limits (a flow's burst: two seconds' worth); UsageError for a bad value."""
    for flag, count in (
        ("--login-threads", config.login_threads),
        ("--login-queue", config.login_queue),
        ("--login-queue-per-host", config.login_queue_per_host),
    ):
        if count < 1:
            raise UsageError(f"{flag} must be at least 1, got {count}")
    if not config.login_rate > 0:  # also refuses NaN
        raise UsageError(f"--login-rate must be positive, got {config.login_rate:g}")
    try:
        return AdmissionLimits(
            max_outstanding=config.login_queue,
            max_per_host=config.login_queue_per_host,
            flow_rate=config.login_rate,
            flow_burst=max(1.0, 2 * config.login_rate),
        )
    except ValueError as err:
        raise UsageError(f"login limits: {err}") from err


def warn_if_exposed(host: str) -> None:
    if host not in LOOPBACK:
        print(f"warning: binding to {host}, reachable beyond this machine", file=sys.stderr)
