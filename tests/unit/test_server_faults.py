"""Unit tests of the server faults (programs.server_faults) and the ledger's fault point."""

from __future__ import annotations

import math
import random

import pytest

from services.errors import InsufficientFunds, InvalidArgument, TransactionFailed
from services.ledger import Ledger
from services.programs.crash_hook import ProcessCrasher
from services.programs.server_faults import AppFailures, app_failures, crash_hook, should_fail
from transports.faults import FaultSpec, FaultSpecError, ServerFaults

FAST_N = 2**10
N = 20_000
# What a Ledger(fail_probability=0.3, seed=42) answered to 40 deposits before
# the draw moved out of the ledger ("." applied, "F" TransactionFailed).
OLD_LEDGER_SEED_42 = ".FFF...F.FF.FF..F..F...F..FF............"


def outcomes(fault_point: AppFailures | None, n: int = 40) -> str:
    with Ledger(scrypt_n=FAST_N, in_memory=True, fault_point=fault_point) as led:
        seen = ""
        for i in range(n):
            try:
                led.deposit(1, 1, f"r{i}")
                seen += "."
            except TransactionFailed:
                seen += "F"
        assert led.balance(1) == 10_000 + seen.count(".")
        return seen


def test_should_fail_rate() -> None:
    rng = random.Random(3)
    faults = ServerFaults(app_fail=0.1)
    hits = sum(should_fail(faults, rng) for _ in range(N))
    assert abs(hits / N - 0.1) <= 5 * math.sqrt(0.1 * 0.9 / N)
    assert not any(should_fail(ServerFaults(), rng) for _ in range(1000))


def test_app_failures_reproduce_the_old_ledger_draws() -> None:
    assert outcomes(app_failures(ServerFaults(app_fail=0.3), seed=42)) == OLD_LEDGER_SEED_42
    # The same thing, drawn by hand: one random.Random(seed) draw per executed change.
    rng = random.Random(42)
    assert "".join("F" if rng.random() < 0.3 else "." for _ in range(40)) == OLD_LEDGER_SEED_42


def test_app_failures_from_a_parsed_spec() -> None:
    spec = FaultSpec.parse("loss=0.2,app_fail=0.3,crash=0.1")
    assert outcomes(app_failures(spec.server, seed=42)) == OLD_LEDGER_SEED_42


def test_no_app_failures_no_fault_point_no_draws() -> None:
    assert app_failures(ServerFaults(crash=0.5), seed=1) is None
    failures = AppFailures(ServerFaults(), seed=1)
    state = failures._rng.getstate()
    for _ in range(100):
        failures()  # never raises, never draws
    assert failures._rng.getstate() == state
    assert outcomes(None) == "." * 40


def test_certain_failure_always_refuses() -> None:
    assert outcomes(app_failures(ServerFaults(app_fail=1.0), seed=0), 10) == "F" * 10


@pytest.mark.parametrize("app_fail", [-0.1, 1.5, math.nan])
def test_app_fail_outside_zero_one_is_refused(app_fail: float) -> None:
    with pytest.raises(ValueError):  # FaultSpecError is a ValueError
        AppFailures(ServerFaults(app_fail=app_fail), seed=0)
    with pytest.raises(FaultSpecError, match="app_fail"):
        ServerFaults(app_fail=app_fail)


def test_crash_hook_only_with_crashes() -> None:
    assert crash_hook(ServerFaults(app_fail=0.5), "random", seed=1) is None
    hook = crash_hook(ServerFaults(crash=0.25), "before-apply", seed=9)
    assert isinstance(hook, ProcessCrasher)
    assert (hook.rate, hook.point, hook.seed) == (0.25, "before-apply", 9)


# -- the ledger's fault point ----------------------------------------------------


class CountingFaultPoint:
    """Counts its calls; refuses the change on the calls listed in ``refuse``."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.calls = 0
        self.refuse = refuse

    def __call__(self) -> None:
        self.calls += 1
        if self.calls in self.refuse:
            raise TransactionFailed("refused by the fault point")


@pytest.mark.parametrize("in_memory", [False, True])
def test_fault_point_runs_once_per_change_that_would_execute(in_memory: bool) -> None:
    point = CountingFaultPoint(refuse=frozenset({2}))
    with Ledger(scrypt_n=FAST_N, in_memory=in_memory, fault_point=point) as led:
        token, _ = led.login(1, "1234", now=0.0)
        led.balance(1)
        assert point.calls == 0  # logins and reads never reach it
        assert led.deposit(1, 5, "a", idempotent=True) == 10_005
        with pytest.raises(TransactionFailed, match="refused by the fault point"):
            led.deposit(1, 5, "b", idempotent=True)  # call 2: refused, nothing stored
        assert point.calls == 2
        # A repeat answered from the idempotency table never reaches it, so never fails.
        for _ in range(3):
            assert led.deposit(1, 5, "a", idempotent=True) == 10_005
            assert led.deposit_for(token, 5, "a", 0.0, idempotent=True) == (1, 10_005)
        assert point.calls == 2
        # A refused request was not stored: its retry executes (and calls again).
        assert led.deposit(1, 5, "b", idempotent=True) == 10_010
        assert point.calls == 3
        # A key reused for another operation is refused from the table: no call.
        with pytest.raises(InvalidArgument):
            led.withdraw(1, 10, "a", idempotent=True)
        assert point.calls == 3
        # The ledger's own refusals come after it (the change was going to be tried).
        with pytest.raises(InsufficientFunds):
            led.withdraw(2, 10**6, "c")
        assert point.calls == 4
        assert led.applications() == {"a": 1, "b": 1}
        assert led.reconcile() == []


def test_repeat_from_the_idempotency_table_never_fails() -> None:
    point = CountingFaultPoint(refuse=frozenset(range(2, 100)))  # every change after the first
    with Ledger(scrypt_n=FAST_N, in_memory=True, fault_point=point) as led:
        assert led.deposit(1, 7, "once", idempotent=True) == 10_007
        for _ in range(20):
            assert led.deposit(1, 7, "once", idempotent=True) == 10_007
        with pytest.raises(TransactionFailed):
            led.deposit(1, 7, "new", idempotent=True)
        assert led.applications() == {"once": 1}
        assert point.calls == 2
