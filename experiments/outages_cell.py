"""One cell of ``experiments.outages``: a steady bank load through one partition, measured.

Role: build the cell's open-loop workload (every client performs a deposit or
withdrawal every ``interval``, at a seeded phase), run it through the
simulator (or real sockets: ``experiments.outages_real``) with the partition
in the fault spec, and turn what happened into
an ``OutageRecord``: the audit (ok / failed / unknown / duplicated /
phantom), attempts and amplification, the server's load per 10 ms window,
its peak after the heal against the steady load, how long the backlog takes
to drain, and latency from each operation's scheduled start.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.audit import Audit, audit
from experiments.framework.records import FLATTEN, OMIT_NONE, Record
from experiments.framework.tables import percentile
from experiments.outages_real import run_real
from experiments.runner import SCRYPT_N, SESSION_TTL
from experiments.workload import Operation, open_accounts, plan_operations
from services.bank import BankService
from services.ledger import Ledger
from transports.admission import Peer
from transports.call import CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import Cut, FaultSpec, Partition
from transports.retry import RetryBudget, RetryPolicy, RtoEstimator
from transports.semantics import ReplyCache, Semantics
from transports.sim import SimRequest, simulate
from transports.wire import Request

#: The server's load is counted in windows of this many seconds.
WINDOW = 0.010
#: gRPC's example throttling (gRFC A6): 10 tokens, 0.1 back per success.
BUDGET_TOKENS = 10.0
BUDGET_RATIO = 0.1
#: The simulated transports and their mode (``simulate(stream=...)``).
STREAM = {"sim-udp": False, "sim-tcp": True}
#: Real loopback sockets (``experiments.outages_real``).
REAL = ("udp", "tcp")


@dataclass(frozen=True)
class Load:
    """The steady offered load and the partition, shared by every cell of a run."""

    clients: int
    interval: float  # each client starts an operation this often (seconds)
    partition_at: float
    after: float  # the load goes on this long after the heal
    timeout: float  # first attempt's timeout (adaptive: the RTO's initial value)
    base: float
    cap: float
    max_attempts: int
    retention: float  # at-most-once reply cache retention
    seed: int

    def __post_init__(self) -> None:
        if self.clients < 1 or self.max_attempts < 1:
            raise ValueError("--clients and --max-attempts must be at least 1")
        if self.partition_at < self.interval:
            raise ValueError("--partition-at must leave at least one --interval of steady load")


@dataclass(frozen=True)
class OutageCell:
    transport: str  # sim-udp or sim-tcp
    policy: str  # a retry policy name
    budget: bool  # with gRPC A6 retry throttling
    semantics: Semantics
    cut: Cut  # the partition's direction
    length: float  # the partition's duration, seconds


@dataclass(frozen=True, kw_only=True)
class OutageRecord(Record):
    """One audited cell and the server's load around the partition."""

    cell: OutageCell = field(metadata=FLATTEN)
    setup: Load  # the run's shared settings
    faults: str  # the cell's fault spec
    audit: Audit = field(metadata=FLATTEN)
    amplification: float  # attempts per operation
    budget_bound: float | None = field(default=None, metadata=OMIT_NONE)
    steady: float  # mean server arrivals per window before the partition
    peak: int  # most arrivals in one window after the heal
    peak_ratio: float  # peak / steady
    drain_s: float  # heal until the last client is back on schedule
    late_p50_ms: float  # finish minus scheduled start
    late_p99_ms: float
    late_max_ms: float
    load: tuple[int, ...]  # server arrivals per window from time 0


def fault_spec(load: Load, cell: OutageCell) -> FaultSpec:
    """The cell's faults: nothing but the partition."""
    return FaultSpec(partition=Partition(cell.length, load.partition_at, cut=cell.cut))


def settings(load: Load, cell: OutageCell) -> RetrySettings:
    """One client's retry settings: its own budget and RTO estimator."""
    policy = RetryPolicy.from_name(cell.policy, timeout=load.timeout, base=load.base, cap=load.cap)
    attempts = 1 if cell.semantics is Semantics.MAYBE else load.max_attempts
    rto = RtoEstimator(initial=load.timeout) if policy.adaptive else None
    budget = RetryBudget(BUDGET_TOKENS, BUDGET_RATIO) if cell.budget else None
    return RetrySettings(policy, attempts, rto=rto, budget=budget)


def schedule(load: Load, cell: OutageCell) -> list[list[float]]:
    """Each client's scheduled start times: every ``interval`` from a seeded phase."""
    end = load.partition_at + cell.length + load.after
    out = []
    for index in range(load.clients):
        phase = random.Random(f"{load.seed}/phase{index}").uniform(0.0, load.interval)
        out.append(
            [phase + k * load.interval for k in range(math.ceil((end - phase) / load.interval))]
        )
    return out


class CountingEndpoint(ServerEndpoint):
    """The server's endpoint, noting when each request reaches it (the server's load)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []  # in the driver's clock

    def receive(
        self, data: bytes, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> Request | bytes | None:
        self.arrivals.append(now)
        return super().receive(data, now, budget, peer)


def run_outage(load: Load, cell: OutageCell) -> OutageRecord:
    """Run the cell on a fresh ledger (in memory for the simulator) and measure it."""
    times = schedule(load, cell)
    plans = plan_operations(load.seed, load.clients, sum(len(t) for t in times))
    faults = fault_spec(load, cell)
    simulated = cell.transport in STREAM
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(
            None if simulated else str(Path(tmp) / "ledger.sqlite3"),
            scrypt_n=SCRYPT_N,
            session_ttl=SESSION_TTL,
            in_memory=simulated,
        )
        try:
            tokens = open_accounts(ledger, load.clients, now=0.0 if simulated else time.monotonic())
            opening = ledger.total_balance()
            amo = cell.semantics is Semantics.AT_MOST_ONCE
            cache = ReplyCache(retention=load.retention) if amo else None
            endpoint = CountingEndpoint(BankService(ledger), cell.semantics, cache)
            if simulated:
                calls, origin = _simulate(load, cell, endpoint, plans, times, tokens, faults), 0.0
            else:
                calls, origin = asyncio.run(
                    run_real(cell.transport, ledger, endpoint, plans, times, tokens,
                             faults.link, lambda: settings(load, cell), load.seed)
                )  # fmt: skip
            outcome = audit(
                [op for plan in plans for op in plan],
                [r for client in calls for r in client],
                ledger.applications(),
                ledger.total_balance(),
                opening,
            )
        finally:
            ledger.close()
    return _measure(load, cell, faults, outcome, calls, times, endpoint.arrivals, origin)


def _simulate(
    load: Load,
    cell: OutageCell,
    endpoint: ServerEndpoint,
    plans: Sequence[Sequence[Operation]],
    times: Sequence[Sequence[float]],
    tokens: Sequence[str],
    faults: FaultSpec,
) -> list[list[CallResult]]:
    requests = [
        [SimRequest(op.request_id, *op.call_args(token), not_before=at)
         for op, at in zip(plan, starts, strict=True)]
        for plan, starts, token in zip(plans, times, tokens, strict=True)
    ]  # fmt: skip
    result = simulate(
        endpoint,
        requests,
        lambda _client: settings(load, cell),
        faults=faults,
        seed=load.seed,
        stream=STREAM[cell.transport],
    )
    return result.calls


def _measure(
    load: Load,
    cell: OutageCell,
    faults: FaultSpec,
    outcome: Audit,
    calls: Sequence[Sequence[CallResult]],
    times: Sequence[Sequence[float]],
    arrivals: Sequence[float],
    origin: float,
) -> OutageRecord:
    """The record of a run whose clock read ``origin`` at the schedule's time 0."""
    counts = collections.Counter(int((t - origin) / WINDOW) for t in arrivals if t >= origin)
    windows = tuple(counts[w] for w in range(max(counts, default=-1) + 1))
    heal = load.partition_at + cell.length
    steady = _steady(windows, load)
    peak = max(windows[int(heal / WINDOW) :], default=0)
    due = [[origin + at for at in starts] for starts in times]
    late = sorted(
        (r.finished - at) * 1000
        for results, starts in zip(calls, due, strict=True)
        for r, at in zip(results, starts, strict=True)
    )
    return OutageRecord(
        cell=cell,
        setup=load,
        faults=str(faults),
        audit=outcome,
        amplification=outcome.attempts / outcome.ops,
        budget_bound=budget_bound(load, outcome) if cell.budget else None,
        steady=steady,
        peak=peak,
        peak_ratio=peak / steady if steady else math.inf,
        drain_s=drain_time(calls, due, origin + heal),
        late_p50_ms=percentile(late, 50),
        late_p99_ms=percentile(late, 99),
        late_max_ms=late[-1] if late else 0.0,
        load=windows,
    )


def _steady(windows: Sequence[int], load: Load) -> float:
    """Mean arrivals per window once every client has started, before the partition."""
    first, last = math.ceil(load.interval / WINDOW), int(load.partition_at / WINDOW)
    span = windows[first:last]
    return sum(span) / len(span) if span else 0.0


def budget_bound(load: Load, outcome: Audit) -> float:
    """Most attempts per operation the retry budget allows (gRFC A6 throttling).

    A client retries only while its tokens exceed half the maximum; each
    failed attempt takes one token and each reply gives ``ratio`` back. So a
    client's retries are fewer than ``max/2 + ratio * replies``, and in all
    ``attempts < ops + clients * max/2 + ratio * ok``.
    """
    extra = load.clients * BUDGET_TOKENS / 2 + BUDGET_RATIO * (outcome.ok + outcome.failed)
    return 1.0 + extra / outcome.ops


def drain_time(
    calls: Sequence[Sequence[CallResult]], times: Sequence[Sequence[float]], heal: float
) -> float:
    """Seconds from the heal until the last client has no overdue operation left.

    A client is back on schedule once an operation due after the heal finds
    the one before it finished: it caught up when that one finished. A client
    still behind at the end of its plan drains when its last call ends.
    """
    worst = 0.0
    for results, starts in zip(calls, times, strict=True):
        caught_up = results[-1].finished if results else heal
        for k in range(1, len(results)):
            if starts[k] >= heal and results[k - 1].finished <= starts[k]:
                caught_up = max(heal, results[k - 1].finished)
                break
        worst = max(worst, caught_up - heal)
    return worst
