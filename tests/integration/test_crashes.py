"""Crash faults on real servers: SIGKILL at a chosen point, restart on the same ledger.

The crash hook's decisions are checked without processes; the rest runs real
``python -m services serve bank`` processes under ``experiments.supervisor``
and checks the guarantees after every crash: the ledger file passes SQLite's
integrity check, no acknowledged operation is lost, exactly-once never
applies an operation twice across restarts, and at-most-once does (its reply
cache dies with the process) exactly where a crash came after the commit.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import crashes
from experiments.crashes import RealCell, RealRun, run_real_cell
from experiments.runner import Cell
from experiments.supervisor import Supervisor, SupervisorError, free_port
from experiments.workload import open_accounts
from services.ledger import Ledger
from services.programs.crash_hook import ProcessCrasher
from transports.aio.client import RpcClient, open_channel
from transports.call import Outcome, RetrySettings
from transports.endpoint import AFTER_APPLY, BEFORE_APPLY
from transports.faults import FaultSpec
from transports.retry import parse_policy
from transports.semantics import Semantics
from transports.wire import Request

#: Real servers waiting out retries, restarts or kernel timers: seconds per test.
pytestmark = pytest.mark.slow

POLICY = parse_policy("expo:timeout=250ms,base=50ms,cap=500ms")


def _deposit(n: int) -> Request:
    return Request(f"r{n}", "bank.deposit", {"token": "t", "amount": 1})


class _Kills:
    """Records where the crash hook would have killed the process."""

    def __init__(self) -> None:
        self.at: list[tuple[str, str]] = []

    def __call__(self, request: Request, point: str) -> None:
        self.at.append((request.id, point))


# --- the crash hook, without processes -----------------------------------------


def _drive(crasher: ProcessCrasher, requests: list[Request]) -> None:
    for request in requests:
        crasher(request, BEFORE_APPLY)
        crasher(request, AFTER_APPLY)


@pytest.mark.parametrize("point", [BEFORE_APPLY, AFTER_APPLY])
def test_hook_kills_at_the_chosen_point_and_only_for_money(point: str) -> None:
    kills = _Kills()
    crasher = ProcessCrasher(1.0, point, seed=1, kill=kills)
    balance = Request("b", "bank.balance", {"token": "t"})
    _drive(crasher, [balance, _deposit(1), Request("w", "bank.withdraw", {"amount": 1})])
    assert kills.at == [("r1", point), ("w", point)]


def test_hook_decisions_are_a_function_of_seed_request_and_attempt() -> None:
    requests = [_deposit(n) for n in range(400)]

    def kills_for(seed: int, order: list[Request], rate: float = 0.1) -> set[tuple[str, str]]:
        kills = _Kills()
        _drive(ProcessCrasher(rate, "random", seed, kill=kills), order)
        return set(kills.at)

    first = kills_for(1, requests)
    assert first == kills_for(1, requests[::-1])  # thread timing cannot change them
    assert first != kills_for(2, requests)
    assert {point for _, point in first} == {BEFORE_APPLY, AFTER_APPLY}
    assert 20 <= len(first) <= 60
    # Common random numbers: a higher rate crashes at a superset of the requests.
    assert first <= kills_for(1, requests, rate=0.3)
    assert kills_for(1, requests, rate=0.0) == set()
    # A retry is a fresh draw: a restarted server does not crash on it forever.
    retries = [dataclasses.replace(r, attempt=2) for r in requests]
    assert kills_for(1, retries) != first


def test_serve_refuses_bad_crash_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services", "serve", "bank", "--crash-point", "sometimes"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "invalid choice: 'sometimes'" in done.stderr


# --- real servers ------------------------------------------------------------------


def _run(transport: str, semantics: Semantics, point: str, *, clients: int, seed: int) -> RealRun:
    cell = Cell(transport, semantics, FaultSpec(crash=0.2), POLICY, 10, 40, clients, seed)
    return run_real_cell(RealCell(cell, point))


def _crashed(run: RealRun, point: str) -> set[str]:
    """Requests the server died on at ``point`` and whose client was finally told ok."""
    return {c.request_id for c in run.crashes if c.point == point} & {
        rid for rid, outcome in run.outcomes.items() if outcome == "ok"
    }


def _assert_durable(run: RealRun) -> None:
    """What must hold in every cell, whatever the semantics."""
    assert run.error is None
    # Clean SIGTERM stop, unless a late retry copy (its client already
    # answered) crashed the last incarnation just as it was being stopped.
    assert run.exit_code in (0, -signal.SIGKILL)
    assert run.restarts > 0
    assert len(run.crashes) - 1 <= run.restarts <= len(run.crashes)
    assert len(run.integrity) >= run.restarts + 1  # after every crash and at the end
    assert set(run.integrity) == {"ok"}
    assert run.unreconciled == ()
    audit = run.run.audit
    assert audit.lost == 0
    assert audit.failed == 0
    assert audit.ok >= audit.ops - 2  # 10 attempts ride out nearly every restart


def test_exactly_once_holds_across_restarts(transport: str) -> None:
    run = _run(transport, Semantics.EXACTLY_ONCE, AFTER_APPLY, clients=4, seed=3)
    _assert_durable(run)
    assert run.violations == []
    assert run.run.audit.duplicated == 0
    assert run.run.audit.money_drift == 0
    # Each request whose reply died with the server was retried, answered from
    # its durable idempotency key, and is in the ledger exactly once.
    assert all(run.applications[rid] == 1 for rid in _crashed(run, AFTER_APPLY))


def test_at_most_once_duplicates_where_a_crash_followed_the_commit(transport: str) -> None:
    run = _run(transport, Semantics.AT_MOST_ONCE, AFTER_APPLY, clients=4, seed=3)
    _assert_durable(run)
    crashed = _crashed(run, AFTER_APPLY)
    assert crashed  # 40 ops at crash=0.2: about 8 crashes
    # The reply cache died with the process: the retry executed again.
    assert all(run.applications[rid] >= 2 for rid in crashed)
    assert run.run.audit.duplicated >= len(crashed)


def test_before_apply_crashes_never_duplicate_at_most_once(transport: str) -> None:
    # One client, so no other request is in flight when the server dies: a
    # crash before apply then loses nothing that was committed.
    run = _run(transport, Semantics.AT_MOST_ONCE, BEFORE_APPLY, clients=1, seed=5)
    _assert_durable(run)
    assert run.run.audit.duplicated == 0
    assert run.run.audit.money_drift == 0
    assert all(run.applications[rid] == 1 for rid in _crashed(run, BEFORE_APPLY))


# --- the supervisor ----------------------------------------------------------------


def _bank_args(db: Path, transport: str, faults: str) -> list[str]:
    return ["bank", "--transport", transport, "--db", str(db), "--faults", faults]


def test_supervisor_stops_after_max_restarts(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    with Ledger(str(db), scrypt_n=2**10, session_ttl=1e9) as ledger:
        (token,) = open_accounts(ledger, 1, now=time.monotonic())
    args = [*_bank_args(db, "udp", "crash=1"), "--crash-point", AFTER_APPLY]
    supervisor = Supervisor(args, port=free_port(), log_dir=tmp_path, db=db, max_restarts=2)

    async def deposits() -> list[Outcome]:
        # One attempt per call, until the supervisor gives up (bounded).
        settings = RetrySettings(parse_policy("fixed:timeout=200ms"), max_attempts=1)
        channel = open_channel("udp", "127.0.0.1", supervisor.port)
        client = RpcClient(channel, settings, rng=random.Random(1))
        outcomes = []
        try:
            for _ in range(50):
                if supervisor.error is not None:
                    break
                deposit = {"token": token, "amount": 1}
                outcomes.append((await client.call("bank.deposit", deposit)).outcome)
        finally:
            await client.close()
        return outcomes

    with supervisor:
        outcomes = asyncio.run(deposits())
        code = supervisor.stop()
    assert supervisor.restarts == 2
    assert supervisor.error == "gave up after 2 restarts"
    assert code is not None and code < 0  # the last incarnation died by SIGKILL
    assert [c.incarnation for c in supervisor.crashes()] == [0, 1, 2]
    assert set(supervisor.integrity) == {"ok"}
    assert Outcome.OK not in outcomes  # every attempt's server died before replying


def test_supervisor_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    not_a_db = tmp_path / "garbage.sqlite3"
    not_a_db.write_bytes(b"this is not a database" * 100)
    supervisor = Supervisor(
        _bank_args(not_a_db, "tcp", "none"), port=free_port(), log_dir=tmp_path, start_timeout=20
    )
    with pytest.raises(SupervisorError, match="cannot open ledger"):
        supervisor.start()
    assert supervisor.stop() is None  # no incarnation ever listened


# --- the experiment ------------------------------------------------------------------


def test_crashes_experiment_sim_and_real(tmp_path: Path) -> None:
    argv = ["--transports", "sim,udp", "--semantics", "at-most-once,exactly-once"]
    argv += ["--crash", "0.1", "--ops", "50", "--real-crash", "0.1", "--real-ops", "24"]
    assert crashes.main([*argv, "--clients", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    with (tmp_path / "crashes.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["transport"], r["semantics"]) for r in rows] == [
        ("sim", "at-most-once"),
        ("sim", "exactly-once"),
        ("udp", "at-most-once"),
        ("udp", "exactly-once"),
    ]
    assert {r["lost"] for r in rows} == {"0"}
    assert rows[3]["duplicated"] == "0" and rows[3]["integrity"] == "ok"
    assert rows[0]["integrity"] == ""  # sim rows have no real-server columns
    markdown = (tmp_path / "crashes.md").read_text()
    assert "## udp: real server processes" in markdown and "## How to read the tables" in markdown
    assert "exactly-once duplicated: 0" in markdown


def test_free_port_is_below_the_ephemeral_range_and_free_for_tcp_and_udp() -> None:
    # A restarted server's port must not be one a client's own socket can be given.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    port = free_port()
    assert 20000 <= port < low
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", port))
