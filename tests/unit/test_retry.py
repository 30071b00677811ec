"""Unit tests for transports.retry: RFC 6298 arithmetic, Brooker backoffs, gRFC A6 budget."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.retry import (
    POLICY_NAMES,
    RetryBudget,
    RetryPolicy,
    RetrySchedule,
    RtoEstimator,
    parse_policy,
)

DRAWS = 300  # schedules per bounds test: cheap, and enough to hit both ends


def _delays(sched: RetrySchedule, max_attempts: int) -> list[float]:
    return [sched.delay_before(n) for n in range(2, max_attempts + 1)]


# --------------------------------------------------------------------------- RFC 6298


def test_rto_before_first_sample_is_initial() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    assert rto.rto == 0.05
    assert rto.srtt is None and rto.rttvar is None and rto.samples == 0


def test_rto_first_sample() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    rto.on_sample(0.01)
    # SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR) = 0.01 + 0.02
    assert rto.srtt == pytest.approx(0.01)
    assert rto.rttvar == pytest.approx(0.005)
    assert rto.rto == pytest.approx(0.03)


def test_rto_second_sample_uses_old_srtt_for_rttvar() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    rto.on_sample(0.01)
    rto.on_sample(0.02)
    # RTTVAR = 3/4*0.005 + 1/4*|0.01 - 0.02| = 0.00625 (old SRTT, not the new one)
    # SRTT = 7/8*0.01 + 1/8*0.02 = 0.01125; RTO = 0.01125 + 4*0.00625 = 0.03625
    assert rto.rttvar == pytest.approx(0.00625)
    assert rto.srtt == pytest.approx(0.01125)
    assert rto.rto == pytest.approx(0.03625)


def test_rto_granularity_floor() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.0001, max_rto=2.0, granularity=0.001)
    rto.on_sample(0.0001)
    # 4*RTTVAR = 0.0002 < G, so RTO = SRTT + G
    assert rto.rto == pytest.approx(0.0011)
    for _ in range(100):  # RTTVAR decays towards 0; G keeps RTO above SRTT
        rto.on_sample(0.0001)
    assert rto.rto == pytest.approx(0.0011)


def test_rto_clamped_to_min_and_max() -> None:
    low = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    low.on_sample(0.0001)  # 0.0001 + 0.001 < min_rto
    assert low.rto == 0.002
    high = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    high.on_sample(1.0)  # 1.0 + 4*0.5 > max_rto
    assert high.rto == 2.0


def test_rfc6298_preset_keeps_one_second_minimum() -> None:
    rto = RtoEstimator.rfc6298()
    assert (rto.rto, rto.min_rto, rto.max_rto) == (1.0, 1.0, 60.0)
    rto.on_sample(0.0001)
    assert rto.rto == 1.0


def test_on_timeout_doubles_up_to_max() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    seen = []
    for _ in range(7):
        rto.on_timeout()
        seen.append(rto.rto)
    assert seen == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
    assert rto.backoffs == 7


def test_sample_after_backoff_recomputes_rto() -> None:
    # Karn's rule is the caller's job (sample only first-attempt replies); the
    # estimator's job is that such a sample collapses a backed-off RTO (5.7).
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    rto.on_sample(0.01)
    for _ in range(3):
        rto.on_timeout()
    assert rto.rto == pytest.approx(0.24)
    rto.on_sample(0.01)
    # RTTVAR = 3/4*0.005 = 0.00375, SRTT = 0.01 -> RTO = 0.01 + 0.015
    assert rto.rto == pytest.approx(0.025)
    assert rto.backoffs == 0
    assert "first" in (RtoEstimator.on_sample.__doc__ or "")  # Karn's rule documented


def test_timeout_before_any_sample_then_sample() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    rto.on_timeout()
    assert rto.rto == pytest.approx(0.1)
    rto.on_sample(0.01)
    assert rto.rto == pytest.approx(0.03)  # same as a first sample with no backoff


@settings(max_examples=150, deadline=None)
@given(
    min_rto=st.floats(1e-4, 0.5),
    span=st.floats(1.0, 100.0),
    events=st.lists(st.one_of(st.none(), st.floats(0.0, 10.0)), max_size=40),
)
def test_rto_always_within_bounds(min_rto: float, span: float, events: list[float | None]) -> None:
    max_rto = min_rto * span
    rto = RtoEstimator(initial=min_rto, min_rto=min_rto, max_rto=max_rto)
    for event in events:
        if event is None:
            rto.on_timeout()
        else:
            rto.on_sample(event)
        assert min_rto <= rto.rto <= max_rto


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_rto_rejects_bad_samples(bad: float) -> None:
    with pytest.raises(ValueError, match="rtt"):
        RtoEstimator().on_sample(bad)


def test_rto_validation() -> None:
    with pytest.raises(ValueError, match="min_rto"):
        RtoEstimator(initial=0.05, min_rto=3.0, max_rto=2.0)
    with pytest.raises(ValueError, match="initial"):
        RtoEstimator(initial=5.0, min_rto=0.002, max_rto=2.0)
    with pytest.raises(ValueError, match="max_rto"):
        RtoEstimator(max_rto=0.0)
    with pytest.raises(ValueError, match="granularity"):
        RtoEstimator(granularity=-1.0)


# --------------------------------------------------------------------------- backoff


def test_fixed_has_constant_timeout_and_no_delay() -> None:
    sched = RetryPolicy.from_name("fixed", timeout=0.02).schedule()
    assert [sched.attempt_timeout(n) for n in range(1, 6)] == [0.02] * 5
    assert [sched.delay_before(n) for n in range(1, 6)] == [0.0] * 5


def test_plain_expo_doubles_up_to_cap() -> None:
    sched = RetryPolicy("expo", timeout=0.02, base=0.005, cap=0.1).schedule()
    delays = _delays(sched, 10)
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1, 0.1])
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert sched.delay_before(1) == 0.0
    assert sched.attempt_timeout(7) == 0.02


def test_expo_huge_attempt_number_does_not_overflow() -> None:
    policy = RetryPolicy("expo", base=0.005, cap=1.0)
    assert policy.schedule().delay_before(5000) == 1.0
    assert policy.max_delay_before(5000) == 1.0


def test_full_jitter_bounds() -> None:
    policy = RetryPolicy("expo-full", base=0.005, cap=0.1)
    for seed in range(DRAWS):
        sched = policy.schedule(rng=random.Random(seed))
        for n in range(2, 12):
            v = min(0.1, 0.005 * 2 ** (n - 2))
            assert 0.0 <= sched.delay_before(n) <= v


def test_equal_jitter_bounds() -> None:
    policy = RetryPolicy("expo-equal", base=0.005, cap=0.1)
    for seed in range(DRAWS):
        sched = policy.schedule(rng=random.Random(seed))
        for n in range(2, 12):
            v = min(0.1, 0.005 * 2 ** (n - 2))
            assert v / 2 <= sched.delay_before(n) <= v


def test_decorrelated_bounds() -> None:
    base, cap = 0.005, 0.1
    policy = RetryPolicy("decorrelated", base=base, cap=cap)
    for seed in range(DRAWS):
        sched = policy.schedule(rng=random.Random(seed))
        prev = base
        for n in range(2, 12):
            d = sched.delay_before(n)
            assert base <= d <= min(cap, 3 * prev)
            prev = d


def test_jitter_actually_spreads() -> None:
    policy = RetryPolicy("expo-full", base=0.005, cap=0.1)
    values = {policy.schedule(rng=random.Random(s)).delay_before(4) for s in range(50)}
    assert len(values) == 50


@pytest.mark.parametrize("name", ["expo-full", "expo-equal", "decorrelated"])
def test_same_seed_same_delays_regardless_of_query_order(name: str) -> None:
    policy = RetryPolicy(name, base=0.005, cap=0.5)
    a = _delays(policy.schedule(rng=random.Random(42)), 8)
    b_sched = policy.schedule(rng=random.Random(42))
    b_sched.delay_before(8)  # jump ahead first: earlier delays are drawn in order
    b = _delays(b_sched, 8)
    assert a == b
    assert b_sched.delay_before(3) == b_sched.delay_before(3)  # memoised, not redrawn
    c = _delays(policy.schedule(rng=random.Random(43)), 8)
    assert a != c


def test_adaptive_follows_shared_estimator() -> None:
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    policy = RetryPolicy.from_name("adaptive")
    sched = policy.schedule(rng=random.Random(1), rto=rto)
    assert sched.attempt_timeout(1) == 0.05
    rto.on_timeout()
    assert sched.attempt_timeout(2) == pytest.approx(0.1)
    assert sched.delay_before(2) == 0.0
    other = policy.schedule(rto=rto)  # a later call sees what earlier calls learned
    rto.on_sample(0.01)
    assert other.attempt_timeout(1) == pytest.approx(0.03)


def test_total_wait_bound() -> None:
    assert RetryPolicy("fixed", timeout=0.02).total_wait_bound(3) == pytest.approx(0.06)
    expo = RetryPolicy("expo", timeout=0.02, base=0.005, cap=1.0)
    assert expo.total_wait_bound(3) == pytest.approx(0.06 + 0.005 + 0.01)
    assert expo.total_wait_bound(1) == pytest.approx(0.02)
    deco = RetryPolicy("decorrelated", timeout=0.02, base=0.005, cap=0.1)
    assert deco.total_wait_bound(4) == pytest.approx(0.08 + 0.015 + 0.045 + 0.1)
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    adaptive = RetryPolicy("adaptive")
    assert adaptive.schedule(rto=rto).total_wait_bound(3) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="max_rto"):
        adaptive.total_wait_bound(3)


@pytest.mark.parametrize("name", ["expo", "expo-full", "expo-equal", "decorrelated"])
def test_actual_delays_within_total_wait_bound(name: str) -> None:
    policy = RetryPolicy(name, timeout=0.02, base=0.005, cap=0.2)
    bound = policy.total_wait_bound(6)
    for seed in range(100):
        sched = policy.schedule(rng=random.Random(seed))
        total = sum(sched.attempt_timeout(n) for n in range(1, 7)) + sum(_delays(sched, 6))
        assert total <= bound + 1e-12
        assert sched.total_wait_bound(6) == bound


# --------------------------------------------------------------------------- gRFC A6


def test_budget_refuses_after_failures_and_successes_restore() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    assert budget.tokens == 10 and budget.allow_retry()
    for _ in range(4):
        budget.on_failure()
    assert budget.tokens == 6 and budget.allow_retry()
    budget.on_failure()
    assert budget.tokens == 5 and not budget.allow_retry()  # strictly greater than half
    budget.on_success()
    assert budget.tokens == pytest.approx(5.1) and budget.allow_retry()


def test_budget_floor_cap_and_exact_accumulation() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    for _ in range(50):
        budget.on_failure()
    assert budget.tokens == 0
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 1.0  # integer milli-tokens: no float drift
    for _ in range(50):
        budget.on_success()
    assert budget.tokens == 6.0 and budget.allow_retry()
    for _ in range(1000):
        budget.on_success()
    assert budget.tokens == 10


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        RetryBudget(max_tokens=0)
    with pytest.raises(ValueError, match="token_ratio"):
        RetryBudget(token_ratio=-0.1)
    with pytest.raises(ValueError, match="token_ratio"):
        RetryBudget(token_ratio=0.0001)


# --------------------------------------------------------------------------- policy API


def test_policy_names_and_from_name() -> None:
    assert POLICY_NAMES == ("fixed", "expo", "expo-full", "expo-equal", "decorrelated", "adaptive")
    for name in POLICY_NAMES:
        policy = RetryPolicy.from_name(name)
        assert (policy.name, policy.timeout, policy.base, policy.cap) == (name, 0.05, 0.005, 1.0)
    assert RetryPolicy.from_name(" Expo-Full ", timeout=0.02).timeout == 0.02


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown retry policy 'bogus'") as err:
        RetryPolicy.from_name("bogus")
    for name in POLICY_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("field", ["timeout", "base", "cap"])
@pytest.mark.parametrize("bad", [0, -0.01, math.nan, math.inf])
def test_non_positive_parameters_rejected(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy("expo", **{field: bad})


def test_other_validation_errors() -> None:
    with pytest.raises(ValueError, match="must not exceed cap"):
        RetryPolicy("expo", base=0.5, cap=0.1)
    RetryPolicy("fixed", base=0.5, cap=0.1)  # unused there, so not cross-checked
    with pytest.raises(TypeError, match="timeout"):
        RetryPolicy("fixed", timeout=True)
    with pytest.raises(ValueError, match="rng"):
        RetryPolicy("expo-full").schedule()
    with pytest.raises(ValueError, match="rto"):
        RetryPolicy("adaptive").schedule(rng=random.Random(0))
    sched = RetryPolicy("fixed").schedule()
    with pytest.raises(ValueError, match="start at 1"):
        sched.attempt_timeout(0)
    with pytest.raises(ValueError, match="start at 1"):
        sched.delay_before(-1)


def test_policy_is_frozen_and_normalised() -> None:
    policy = RetryPolicy("expo", timeout=1, base=1, cap=2)
    assert isinstance(policy.timeout, float)
    assert policy == RetryPolicy("expo", timeout=1.0, base=1.0, cap=2.0)
    with pytest.raises(AttributeError):
        policy.timeout = 2.0  # type: ignore[misc]


def test_describe() -> None:
    full = RetryPolicy.from_name("expo-full", timeout=0.02)
    assert full.describe() == "expo-full(timeout=20ms, base=5ms, cap=1s)"
    assert RetryPolicy("fixed", timeout=0.0005).describe() == "fixed(timeout=500us)"
    assert RetryPolicy("decorrelated", cap=2.5).describe() == (
        "decorrelated(timeout=50ms, base=5ms, cap=2.5s)"
    )
    rto = RtoEstimator(initial=0.05, min_rto=0.002, max_rto=2.0)
    assert RetryPolicy("adaptive").describe(rto) == "adaptive(initial=50ms, min=2ms, max=2s)"
    assert RetryPolicy("adaptive").describe() == "adaptive(RFC 6298 RTO)"


def test_parse_policy() -> None:
    assert parse_policy("expo-full") == RetryPolicy.from_name("expo-full")
    parsed = parse_policy("expo-full:timeout=20ms, base=0.002,cap=1.5s")
    assert parsed == RetryPolicy("expo-full", timeout=0.02, base=0.002, cap=1.5)
    assert parse_policy("fixed:timeout=500us").timeout == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="valid names"):
        parse_policy("nope")
    with pytest.raises(ValueError, match="bad policy parameter"):
        parse_policy("expo:jitter=1")
    with pytest.raises(ValueError, match="duration"):
        parse_policy("expo:timeout=fast")
    with pytest.raises(ValueError, match="twice"):
        parse_policy("expo:cap=1,cap=2")
    with pytest.raises(ValueError, match="timeout"):
        parse_policy("expo:timeout=0ms")
