"""Unit tests of the services' command line turned into typed configs (no servers started)."""

from __future__ import annotations

import dataclasses

import pytest

from services.programs.cli import build_parser, client_config, main, server_config
from services.programs.config import ClientConfig, ServerConfig
from services.programs.options import admission_limits, served_semantics, server_limits
from services.programs.server import listening_line
from transports.admission import AdmissionLimits
from transports.aio.driver import ServerLimits
from transports.faults import FaultSpec
from transports.semantics import Semantics


def parse_serve(*argv: str) -> ServerConfig:
    return server_config(build_parser().parse_args(["serve", *argv]))


def parse_client(*argv: str) -> ClientConfig:
    return client_config(build_parser().parse_args(["client", *argv]))


def test_defaults_match_the_command_line() -> None:
    for service in ("text", "numbers", "bank"):
        assert parse_serve(service) == ServerConfig(service)
    for service in ("text", "numbers", "atm"):
        assert parse_client(service) == ClientConfig(service)


def test_every_serve_option_reaches_the_config() -> None:
    config = parse_serve(
        "bank", "--transport", "udp", "--host", "::1", "--port", "0",
        "--faults", "loss=0.1,app_fail=0.2,crash=0.3", "--seed", "9", "--db", "x.sqlite3",
        "--semantics", "at-most-once", "--fault-backend", "kernel", "--workers", "3",
        "--threads", "2", "--prime-processes", "0", "--crash-point", "after-apply",
        "--max-connections", "7", "--frame-timeout", "1.5", "--idle-timeout", "2.5",
        "--max-in-flight", "8", "--loop", "uvloop", "--verbose",
    )  # fmt: skip
    assert config == ServerConfig(
        service="bank",
        transport="udp",
        host="::1",
        port=0,
        faults=FaultSpec(loss=0.1, app_fail=0.2, crash=0.3),
        seed=9,
        db="x.sqlite3",
        semantics=Semantics.AT_MOST_ONCE,
        fault_backend="kernel",
        workers=3,
        threads=2,
        prime_processes=0,
        crash_point="after-apply",
        max_connections=7,
        frame_timeout=1.5,
        idle_timeout=2.5,
        max_in_flight=8,
        loop="uvloop",
        verbose=True,
    )
    assert served_semantics(config) is Semantics.AT_MOST_ONCE
    assert server_limits(config) == ServerLimits(
        max_connections=7, frame_timeout=1.5, idle_timeout=2.5, max_in_flight=8
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


def test_the_login_options_reach_the_admission_limits() -> None:
    config = parse_serve(
        "bank", "--login-queue", "20", "--login-queue-per-host", "15", "--login-rate", "2"
    )
    assert admission_limits(config) == AdmissionLimits(
        max_outstanding=20, max_per_host=15, flow_rate=2.0, flow_burst=4.0
    )
    assert admission_limits(parse_serve("bank")) == AdmissionLimits()


def test_every_client_option_reaches_the_config() -> None:
    config = parse_client(
        "atm", "--transport", "udp", "--host", "h", "--port", "6000",
        "--faults", "dup=0.5", "--seed", "4", "--timeout", "0.25", "--attempts", "3",
    )  # fmt: skip
    assert config == ClientConfig("atm", "udp", "h", 6000, FaultSpec(dup=0.5), 4, 0.25, 3)


def test_default_semantics_per_service() -> None:
    assert served_semantics(ServerConfig("bank")) is Semantics.EXACTLY_ONCE
    assert served_semantics(ServerConfig("text")) is Semantics.AT_LEAST_ONCE


def test_listening_line_format() -> None:
    config = ServerConfig("bank", faults=FaultSpec.parse("loss=0.1,crash=0.2"), loop="uvloop")
    assert listening_line(config, "127.0.0.1", 5051, Semantics.EXACTLY_ONCE) == (
        "[LISTENING] bank on tcp://127.0.0.1:5051 (semantics exactly-once, framing length, "
        "faults loss=0.1,crash=0.2, crash point random, loop uvloop)"
    )
    assert listening_line(ServerConfig("text"), "h", 1, Semantics.AT_LEAST_ONCE) == (
        "[LISTENING] text on tcp://h:1 (semantics at-least-once, framing length, faults none)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "bank", "--faults", "loss=2"], "loss must be a probability in [0, 1], got 2"),
        (["serve", "bank", "--port", "70000"], "--port must be 0..65535, got 70000"),
        (["serve", "numbers", "--prime-processes", "-1"], "--prime-processes must be 0 or more"),
        (["serve", "bank", "--workers", "0"], "--workers must be 1..64, got 0"),
        (["serve", "bank", "--login-queue", "0"], "--login-queue must be at least 1, got 0"),
        (["serve", "bank", "--login-queue-per-host", "0"], "--login-queue-per-host must be"),
        (["serve", "bank", "--login-rate", "nan"], "--login-rate must be positive, got nan"),
        (["client", "atm", "--faults", "crash=2"], "crash must be a probability"),
        (["client", "atm", "--port", "-1"], "--port must be 0..65535, got -1"),
        (["client", "atm", "--timeout", "0"], "--timeout must be positive"),
        (["client", "atm", "--attempts", "0"], "--attempts must be at least 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
