"""experiments.tcp_prediction: TCP's prediction from the handshake and RTO schedule.

Closed forms where the model reduces to one (an established connection, a
timeout below the first retransmission), and the simulator in stream mode
(``sim-tcp``) over many seeds where the model's assumptions hold: one call
per connection, or a timeout long enough that a call rarely leaves anything
behind for the next one.
"""

from __future__ import annotations

import math

import pytest

from experiments.analytic import agrees
from experiments.runner import Cell, run_cell
from experiments.tcp_prediction import (
    SIM_LATENCY,
    attempt_times,
    calls_per_client,
    handshakes,
    predict_tcp,
    round_trip_exceeds,
)
from transports.faults import FaultSpec
from transports.retry import RetryPolicy, parse_policy
from transports.semantics import Semantics
from transports.tcp_model import delay_distribution, established_schedule, p_sum_exceeds

FIXED_50MS = RetryPolicy.from_name("fixed", timeout=0.05)
FIXED_1S = RetryPolicy.from_name("fixed", timeout=1.0)


def established_exceeds(t: float, loss: float) -> float:
    """P(request + reply delay > t) on a connection whose handshake lost nothing."""
    delays = delay_distribution(established_schedule(0.0), loss, SIM_LATENCY)
    return p_sum_exceeds(t, delays, delays)


@pytest.mark.parametrize("loss", [0.05, 0.1, 0.3])
def test_handshake_outcomes_cover_the_probability_mass(loss: float) -> None:
    outcomes, left_out = handshakes(loss)
    assert math.isclose(math.fsum(outcomes.values()) + left_out, 1.0, abs_tol=1e-12)
    assert 0.0 <= left_out < 1e-4
    clean = [p for c, p in outcomes.items() if c.established_at == 0.0]
    assert clean == [pytest.approx((1 - loss) ** 2)]  # SYN and SYN-ACK through at once
    # A lost SYN-ACK: the client samples ~1 s (it echoes the first SYN).
    assert any(c.established_at == 1.0 and c.client_rtt == 1.0 for c in outcomes)


def test_below_the_first_retransmission_every_loss_is_a_timeout() -> None:
    loss = 0.2
    # One call on a new connection: SYN, SYN-ACK, request and reply must all get through.
    (first,) = round_trip_exceeds(loss, [0.05], [1])
    assert first == pytest.approx(1 - (1 - loss) ** 4)
    # Many calls: the handshake's share vanishes, the established round trip stays.
    (many,) = round_trip_exceeds(loss, [0.05], [10_000])
    assert many == pytest.approx(1 - (1 - loss) ** 2, rel=1e-3)
    assert established_exceeds(0.05, loss) == pytest.approx(1 - (1 - loss) ** 2)


def test_later_calls_on_a_clean_connection_follow_the_established_schedule() -> None:
    loss = 0.3
    long_run = round_trip_exceeds(loss, [0.5, 1.0, 1.5], [100_000])
    assert long_run == pytest.approx(
        [established_exceeds(t, loss) for t in (0.5, 1.0, 1.5)], rel=2e-2
    )


def test_no_loss_means_one_clean_attempt() -> None:
    for semantics in ("maybe", "at-least-once", "at-most-once", "exactly-once"):
        prediction = predict_tcp(semantics, 0.0, 5, FIXED_50MS, [10] * 4)
        assert prediction is not None
        assert (prediction.ok, prediction.unknown, prediction.attempts) == (1.0, 0.0, 1.0)
        assert (prediction.duplicated, prediction.phantom, prediction.executions) == (0, 0, 1)


@pytest.mark.parametrize("timeout", [0.05, 0.3, 1.0])
def test_every_attempt_executes_under_at_least_once(timeout: float) -> None:
    policy = RetryPolicy.from_name("fixed", timeout=timeout)
    calls = calls_per_client(200, 20)
    retried = predict_tcp("at-least-once", 0.3, 5, policy, calls)
    once = predict_tcp("exactly-once", 0.3, 5, policy, calls)
    maybe = predict_tcp("maybe", 0.3, 5, policy, calls)
    assert retried is not None and once is not None and maybe is not None
    (slow, late, never) = round_trip_exceeds(0.3, [timeout, 4 * timeout, 5 * timeout], calls)
    # A call retries when its first round trip outlasts the timeout; both copies execute.
    assert retried.duplicated == pytest.approx(slow)
    assert retried.executions == retried.attempts
    assert retried.unknown == pytest.approx(never) and retried.phantom == retried.unknown
    assert retried.attempts > 1 + slow and retried.attempts - 1 - slow >= late
    # The same calls, deduplicated: one execution each, the same outcomes.
    assert (once.ok, once.attempts, once.duplicated) == (retried.ok, retried.attempts, 0.0)
    # maybe: one attempt, unknown when the round trip outlasts the one timeout.
    assert maybe.attempts == 1.0 and maybe.unknown == pytest.approx(slow)


def test_attempt_times_of_deterministic_policies() -> None:
    fixed = attempt_times(FIXED_50MS, 3)
    assert fixed is not None
    assert fixed[0] == (0.0, 0.05, 0.1) and fixed[1] == pytest.approx(0.15)
    expo = attempt_times(parse_policy("expo:timeout=100ms,base=10ms,cap=15ms"), 3)
    assert expo is not None
    assert expo[0] == pytest.approx((0.0, 0.11, 0.225))  # backoff 10 ms, then 15 (the cap)
    assert expo[1] == pytest.approx(0.325)
    assert attempt_times(parse_policy("expo-full"), 3) is None  # jittered: random times
    assert predict_tcp("at-least-once", 0.1, 3, parse_policy("adaptive"), [1]) is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: predict_tcp("twice", 0.1, 3, FIXED_50MS, [1]), "unknown semantics"),
        (lambda: predict_tcp("maybe", 1.0, 3, FIXED_50MS, [1]), "loss must be"),
        (lambda: predict_tcp("maybe", -0.1, 3, FIXED_50MS, [1]), "loss must be"),
        (lambda: predict_tcp("at-least-once", 0.1, 0, FIXED_50MS, [1]), "max_attempts"),
        (lambda: round_trip_exceeds(0.1, [1.0], []), "calls must be"),
        (lambda: round_trip_exceeds(0.1, [1.0], [0, 0]), "calls must be"),
        (lambda: calls_per_client(0, 3), "at least 1"),
    ],
)
def test_bad_arguments_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_calls_per_client_spreads_as_the_workload_does() -> None:
    assert calls_per_client(10, 4) == (3, 3, 2, 2)
    assert calls_per_client(3, 3) == (1, 1, 1)


# --- against the simulator: many seeds, where the assumptions hold -----------------------


def pooled(semantics: Semantics, loss: float, policy: RetryPolicy, ops: int, clients: int,
           seeds: int) -> dict[str, int]:  # fmt: skip
    totals = dict.fromkeys(("ok", "unknown", "duplicated", "phantom", "attempts"), 0)
    for seed in range(seeds):
        cell = Cell("sim-tcp", semantics, FaultSpec(loss=loss), policy, 5, ops, clients, seed)
        audit = run_cell(cell).audit
        for key in totals:
            totals[key] += getattr(audit, key)
    return totals


@pytest.mark.parametrize(
    ("semantics", "loss", "policy", "ops", "clients"),
    [
        # One call per connection: no head-of-line blocking between calls, at any timeout.
        (Semantics.MAYBE, 0.3, FIXED_50MS, 100, 100),
        (Semantics.AT_LEAST_ONCE, 0.3, FIXED_50MS, 100, 100),
        (Semantics.AT_LEAST_ONCE, 0.2, parse_policy("expo:timeout=300ms,base=100ms,cap=1s"), 100,
         100),
        # Ten calls per connection at a timeout above the retransmissions: a call
        # rarely leaves a message behind; the handshake's RTT sample still counts.
        (Semantics.MAYBE, 0.1, FIXED_1S, 200, 20),
        (Semantics.AT_LEAST_ONCE, 0.2, FIXED_1S, 200, 20),
        (Semantics.EXACTLY_ONCE, 0.2, FIXED_1S, 200, 20),
    ],
)  # fmt: skip
def test_the_simulator_agrees_with_the_prediction(
    semantics: Semantics, loss: float, policy: RetryPolicy, ops: int, clients: int
) -> None:
    seeds = 4
    measured = pooled(semantics, loss, policy, ops, clients, seeds)
    prediction = predict_tcp(semantics.value, loss, 5, policy, calls_per_client(ops, clients))
    assert prediction is not None
    n = ops * seeds
    for key in ("ok", "unknown", "duplicated", "phantom"):
        assert agrees(measured[key], n, getattr(prediction, key)), (key, measured, prediction)
    # Attempts per call: a mean, within 4 standard errors (attempts <= 5).
    assert abs(measured["attempts"] / n - prediction.attempts) < 4 * 2 / math.sqrt(n)


def test_head_of_line_blocking_between_calls_is_what_the_prediction_leaves_out() -> None:
    # Ten calls per connection at 50 ms: a call gives up while TCP still holds its
    # messages, and the next calls wait behind them: far more unknown than predicted.
    ops, clients, seeds = 200, 20, 2
    measured = pooled(Semantics.MAYBE, 0.3, FIXED_50MS, ops, clients, seeds)
    prediction = predict_tcp("maybe", 0.3, 5, FIXED_50MS, calls_per_client(ops, clients))
    assert prediction is not None
    assert measured["unknown"] / (ops * seeds) > prediction.unknown + 0.2
