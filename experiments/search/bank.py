"""One fault schedule run against the bank: the workload, the ledger, the audit.

Role: what a search evaluates per example (``run_in_sim``: the simulator,
virtual time) and what a replay shares with it (``Workload``, the operations,
the template ledger, ``summarise``). Each run gets a fresh copy of a template
SQLite ledger whose accounts and sessions were made once: copying a closed
file costs ~1-5 ms, building one (schema, scrypt-hashed PINs, logins) ~25 ms,
too much for a shrinking search.
"""

from __future__ import annotations

import enum
import functools
import itertools
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from experiments.audit import Audit, audit
from experiments.search.trace import Step, TracedEndpoint, traced_links
from experiments.workload import Operation
from services.bank import BankService
from services.ledger import Ledger
from transports.call import CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import TcpRecovery
from transports.links import Links
from transports.retry import RetryPolicy, RtoEstimator
from transports.schedule import FaultSchedule
from transports.semantics import ReplyCache, Semantics
from transports.sim import CrashPoint, SimRequest, simulate

SCRYPT_N = 2**10
PIN = "0000"
SESSION_TTL = 1e9  # sessions outlive any run
LedgerRow = tuple[int, str, int, str, int, int]  # Ledger.rows()


class Model(enum.Enum):
    """How the network carries messages: the simulator's mode and the replay's link rules."""

    DATAGRAM = "datagram"  # UDP-like: a drop is gone, duplicates and overtaking happen
    TCP = "tcp"  # a byte stream; TCP retransmits a drop after its RTO (Linux's model)
    TCP_RESET = "tcp-reset"  # a byte stream whose loss breaks the connection

    @property
    def stream(self) -> bool:
        return self is not Model.DATAGRAM

    @property
    def recovery(self) -> TcpRecovery:
        return TcpRecovery.RESET if self is Model.TCP_RESET else TcpRecovery.RETRANSMIT


@dataclass(frozen=True)
class Workload:
    """What each client does and how it retries: ``ops`` deposits each, one at a time."""

    semantics: Semantics
    policy: RetryPolicy
    max_attempts: int = 20
    ops: int = 3
    #: At-most-once: seconds the server's reply cache keeps a reply (None: the
    #: cache's default, 300 s, longer than any run here).
    retention: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.ops <= 100:
            raise ValueError(f"ops per client must be in 1..100, got {self.ops}")
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(f"max attempts must be in 1..100, got {self.max_attempts}")
        if self.retention is not None and not 0.0 < self.retention <= 60.0:
            raise ValueError(f"retention must be in (0, 60] s, got {self.retention}")

    def reply_cache(self) -> ReplyCache | None:
        """The server's reply cache (None: the endpoint's default)."""
        return None if self.retention is None else ReplyCache(retention=self.retention)

    def retry_settings(self) -> RetrySettings:
        attempts = 1 if self.semantics is Semantics.MAYBE else self.max_attempts
        rto = RtoEstimator(initial=self.policy.timeout) if self.policy.adaptive else None
        return RetrySettings(self.policy, attempts, rto=rto)

    def operations(self, clients: int) -> list[list[Operation]]:
        """Client ``i`` deposits 1, 2, ... into account ``i + 1`` (ids ``c{i}-{k}``)."""
        return [
            [Operation(f"c{i}-{k}", "deposit", k + 1, i + 1) for k in range(self.ops)]
            for i in range(clients)
        ]


def client_rng(seed: int, index: int) -> random.Random:
    """Client ``index``'s generator (jittered policies): the same in the simulator and replay."""
    return random.Random(f"{seed}/client{index}")


class BankTemplate:
    """A template ledger (accounts and sessions made once) copied per run."""

    def __init__(self, workdir: Path, max_clients: int) -> None:
        self.workdir = workdir
        self.template = workdir / "template.sqlite3"
        self._counter = itertools.count()
        with Ledger(
            str(self.template), demo_accounts=False, scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL
        ) as ledger:
            tokens = []
            for i in range(max_clients):
                ledger.create_account(i + 1, f"client {i}", PIN, 0)
                tokens.append(ledger.login(i + 1, PIN, now=0.0)[0])
        self.tokens = tuple(tokens)

    @classmethod
    @contextmanager
    def temporary(cls, max_clients: int) -> Iterator[BankTemplate]:
        # In memory-backed /dev/shm where there is one: each run commits a few
        # transactions, and a search of 1000 runs spent 85% of its time in fsync
        # on a disk (25 s against 4 s of CPU). Still real SQLite files.
        shm = Path("/dev/shm")
        where = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        with tempfile.TemporaryDirectory(prefix="search-", dir=where) as tmp:
            yield cls(Path(tmp), max_clients)

    @contextmanager
    def fresh(self) -> Iterator[Ledger]:
        """A new ledger file copied from the template; deleted afterwards."""
        path = self.workdir / f"run{next(self._counter)}.sqlite3"
        shutil.copyfile(self.template, path)
        try:
            with Ledger(str(path), scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL) as ledger:
                yield ledger
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)


@dataclass(frozen=True)
class ScheduleRun:
    """One run of a schedule: the audit and what it is made of."""

    audit: Audit
    operations: tuple[Operation, ...]
    results: tuple[CallResult, ...]
    rows: tuple[LedgerRow, ...]  # every ledger row, oldest first
    integrity: str
    arrivals: int  # requests that reached the server
    crashes: tuple[tuple[int, CrashPoint], ...]  # (arrival, point)
    links: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> counters
    timer_lag: float | None = None  # real sockets: the latest a loop timer ran, in seconds

    def applied(self, request_id: str) -> list[LedgerRow]:
        return [row for row in self.rows if row[1] == request_id]


def summarise(
    ledger: Ledger,
    operations: Sequence[Operation],
    results: Sequence[CallResult],
    opening: int,
    links: Sequence[Links],
    arrivals: int,
    crashes: Sequence[tuple[int, CrashPoint]],
) -> ScheduleRun:
    """Audit a finished run: the ledger against what every client was told."""
    counters = {
        link.label: dict(link.counters)
        for pair in links
        for link in (pair.request, pair.reply)
        if link is not None
    }
    return ScheduleRun(
        audit(operations, results, ledger.applications(), ledger.total_balance(), opening),
        tuple(operations),
        tuple(results),
        tuple(ledger.rows()),
        ledger.integrity_check(),
        arrivals,
        tuple(crashes),
        counters,
    )


def _count_rows(ledger: Ledger) -> int:
    return len(ledger.rows())


def run_in_sim(
    bank: BankTemplate,
    workload: Workload,
    model: Model,
    schedule: FaultSchedule,
    clients: int,
    *,
    seed: int = 0,
    service_time: float = 0.0,
    trace: list[Step] | None = None,
) -> ScheduleRun:
    """Run the workload under ``schedule`` in the simulator on a fresh ledger; audit it.

    ``trace``: note what every link and the server did there (slower).
    """
    with bank.fresh() as ledger:
        service = BankService(ledger)
        if trace is None:
            endpoint = ServerEndpoint(service, workload.semantics, workload.reply_cache())
            links = schedule.links(clients, stream=model.stream, tcp=model.recovery, origin=0.0)
        else:
            rows = functools.partial(_count_rows, ledger)
            endpoint = TracedEndpoint(
                service, workload.semantics, schedule.crash_at, trace, rows, workload.reply_cache()
            )
            links = traced_links(schedule, clients, trace, stream=model.stream, tcp=model.recovery)
        operations = workload.operations(clients)
        plans = [
            [SimRequest(op.request_id, *op.call_args(bank.tokens[i])) for op in plan]
            for i, plan in enumerate(operations)
        ]
        opening = ledger.total_balance()
        result = simulate(
            endpoint,
            plans,
            lambda _i: workload.retry_settings(),
            seed=seed,
            stream=model.stream,
            links=links,
            crashes=schedule.crash_at,
            service_time=service_time,
            max_events=100_000,
        )
        return summarise(
            ledger,
            [op for plan in operations for op in plan],
            [r for calls in result.calls for r in calls],
            opening,
            links,
            result.arrivals,
            result.crashes,
        )
