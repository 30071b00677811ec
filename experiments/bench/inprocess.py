"""In-process measurements for ``python -m experiments.throughput``, as typed rows.

The simulator's logical operations per second and the numbers service's prime
check times: no sockets, no server processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from experiments.bench.labels import SIM_TARGET
from experiments.framework.records import Record
from transports.call import RetrySettings
from transports.retry import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class SimRate(Record):
    """Logical operations per second of the simulator on one workload (best of rounds)."""

    workload: str
    ops: int
    ops_per_s: int
    target: int | None


@dataclass(frozen=True, kw_only=True)
class PrimeTime(Record):
    """How long one prime check takes, alone and as a numbers.check call (best of 5)."""

    number: str
    digits: int
    prime: bool
    is_probable_prime_us: float
    numbers_check_us: float


def sim_rates(ops: int, rounds: int) -> list[SimRate]:
    """Logical operations per second of the simulator (best of ``rounds``).

    Bank deposits and withdrawals set up as the retries experiment does (8
    clients, no faults), timed around the simulation alone; with the
    in-memory ledger the experiment uses and, for comparison, a file ledger.
    """
    import tempfile

    from experiments.runner import SCRYPT_N, SESSION_TTL, Cell, run_sim
    from experiments.workload import open_accounts, plan_operations
    from services.bank import BankService
    from services.ledger import Ledger
    from transports.endpoint import ServerEndpoint
    from transports.faults import FaultSpec
    from transports.semantics import Semantics

    rows = []
    policy = RetryPolicy.from_name("fixed", timeout=0.1)
    variants = [
        (Semantics.AT_LEAST_ONCE, True),
        (Semantics.EXACTLY_ONCE, True),
        (Semantics.EXACTLY_ONCE, False),
    ]
    for semantics, in_memory in variants:
        cell = Cell("sim", semantics, FaultSpec(), policy, 5, ops, 8, 1)
        best = 0.0
        for _ in range(max(1, rounds)):
            with tempfile.TemporaryDirectory() as tmp:
                path = None if in_memory else str(Path(tmp) / "ledger.sqlite3")
                ledger = Ledger(
                    path, scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL, in_memory=in_memory
                )
                try:
                    endpoint = ServerEndpoint(BankService(ledger), semantics)
                    plans = plan_operations(cell.seed, cell.clients, ops)
                    tokens = open_accounts(ledger, cell.clients, now=0.0)
                    begun = time.perf_counter()
                    run_sim(cell, endpoint, plans, tokens)
                    best = max(best, ops / (time.perf_counter() - begun))
                finally:
                    ledger.close()
        where = "in-memory ledger" if in_memory else "file ledger (WAL)"
        rows.append(
            SimRate(
                workload=f"bank, {semantics.value}, {where}",
                ops=ops,
                ops_per_s=round(best),
                target=SIM_TARGET,
            )
        )
    rows.append(_sim_text(ops, rounds))
    return rows


def _sim_text(ops: int, rounds: int) -> SimRate:
    from services.text import TextService
    from transports.endpoint import ServerEndpoint
    from transports.sim import SimRequest, simulate

    plans = [
        [SimRequest(f"c{i}-{n}", "text.convert", {"text": "hello world"}) for n in range(ops // 8)]
        for i in range(8)
    ]
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=0.1))
    best = 0.0
    for _ in range(max(1, rounds)):
        started = time.perf_counter()
        simulate(ServerEndpoint(TextService()), plans, lambda _i: settings)
        best = max(best, 8 * (ops // 8) / (time.perf_counter() - started))
    return SimRate(
        workload="text.convert (no ledger)", ops=8 * (ops // 8), ops_per_s=round(best), target=None
    )


PRIME_CASES: dict[str, int] = {
    "64-bit prime (2^64-59)": 2**64 - 59,
    "64-bit composite (two 32-bit primes)": 4294967291 * 4294967279,
    "100-digit prime": 0,  # found at run time: the first prime above 10^99
    "100-digit composite": 10**99 + 1,
}


def prime_times(repeat: int = 200) -> list[PrimeTime]:
    from services.numbers import NumbersService
    from services.primes import is_probable_prime
    from transports.service import CallContext

    cases = dict(PRIME_CASES)
    n = 10**99 + 1
    while not is_probable_prime(n):
        n += 2
    cases["100-digit prime"] = n
    service, ctx = NumbersService(), CallContext("bench", 0.0)
    rows = []
    for label, value in cases.items():
        args = {"n": str(value)}
        check = _best_us(lambda v=value: is_probable_prime(v), repeat)  # type: ignore[misc]
        call = _best_us(lambda a=args: service.handle("numbers.check", a, ctx), repeat)  # type: ignore[misc]
        rows.append(
            PrimeTime(
                number=label,
                digits=len(str(value)),
                prime=is_probable_prime(value),
                is_probable_prime_us=round(check, 1),
                numbers_check_us=round(call, 1),
            )
        )
    return rows


def _best_us(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - started) / repeat * 1e6)
    return best
