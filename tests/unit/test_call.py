"""The client's retry state machine, driven by hand: time is an argument."""

from __future__ import annotations

import dataclasses
import random

import pytest

from transports.call import Call, CallResult, Outcome, RetrySettings
from transports.retry import RetryBudget, RetryPolicy, RtoEstimator
from transports.wire import Reply, Request, decode_request, encode_reply

TIMEOUT = 0.05


def make_call(attempts: int = 3, **settings: object) -> Call:
    policy = settings.pop("policy", RetryPolicy.from_name("fixed", timeout=TIMEOUT))
    return Call(
        Request("c0-1", "bank.deposit", {"token": "t", "amount": 5}),
        RetrySettings(policy, attempts, **settings),  # type: ignore[arg-type]
        random.Random(1),
    )


def ok_reply(attempt: int = 1, request_id: str = "c0-1") -> bytes:
    return encode_reply(Reply.ok(request_id, attempt, {"balance": 10005}))


def test_answered_on_the_first_attempt() -> None:
    call = make_call()
    sent = decode_request(call.start(10.0))
    assert (sent.id, sent.attempt) == ("c0-1", 1)
    assert call.next_timer() == pytest.approx(10.0 + TIMEOUT)
    assert call.on_reply(ok_reply(), 10.002)
    assert call.result is not None and call.result.outcome is Outcome.OK
    assert call.result.latency == pytest.approx(0.002)
    assert call.next_timer() is None


def test_timeouts_retry_with_the_same_id_then_give_up_unknown() -> None:
    call = make_call(attempts=3)
    call.start(0.0)
    now = 0.0
    for attempt in (2, 3):
        now = call.next_timer() or 0.0
        assert call.on_timer(now) is None  # timed out: fixed policy retries at once
        retry = call.on_timer(call.next_timer() or now)
        assert retry is not None and decode_request(retry).attempt == attempt
        assert decode_request(retry).id == "c0-1"
    call.on_timer(call.next_timer() or now)
    assert call.result is not None
    assert (call.result.outcome, call.result.attempts) == (Outcome.UNKNOWN, 3)


def test_error_reply_is_a_definite_failure_but_internal_is_unknown() -> None:
    call = make_call()
    call.start(0.0)
    call.on_reply(encode_reply(Reply.error("c0-1", 1, "INSUFFICIENT_FUNDS", "no")), 0.001)
    assert call.result is not None and call.result.outcome is Outcome.FAILED
    call = make_call()
    call.start(0.0)
    call.on_reply(encode_reply(Reply.error("c0-1", 1, "INTERNAL", "boom")), 0.001)
    assert call.result is not None and call.result.outcome is Outcome.UNKNOWN


def test_stale_and_corrupted_replies_are_ignored() -> None:
    call = make_call()
    call.start(0.0)
    assert not call.on_reply(ok_reply(request_id="c0-0"), 0.001)  # an earlier call's
    damaged = bytearray(ok_reply())
    damaged[-2] ^= 0x01
    assert not call.on_reply(bytes(damaged), 0.001)
    assert not call.done
    assert call.on_reply(ok_reply(), 0.002)


def test_karn_rule_samples_only_first_attempt_answers() -> None:
    rto = RtoEstimator(initial=TIMEOUT, min_rto=0.001, max_rto=1.0)
    policy = RetryPolicy.from_name("adaptive")
    first = make_call(rto=rto, policy=policy)
    first.start(0.0)
    first.on_reply(ok_reply(), 0.004)
    assert rto.samples == 1 and rto.srtt == pytest.approx(0.004)
    retried = make_call(rto=rto, policy=policy)
    retried.start(1.0)
    retried.on_timer(retried.next_timer() or 0.0)  # timeout: RTO backs off
    assert rto.backoffs == 1
    retried.on_timer(retried.next_timer() or 0.0)
    retried.on_reply(ok_reply(attempt=2), 1.5)
    assert rto.samples == 1  # ambiguous sample skipped


def test_connection_lost_retries_after_the_backoff() -> None:
    call = make_call(policy=RetryPolicy.from_name("expo", timeout=TIMEOUT, base=0.01))
    call.start(0.0)
    call.on_connection_lost(0.001)
    assert call.next_timer() == pytest.approx(0.011)  # base backoff before attempt 2
    retry = call.on_timer(0.011)
    assert retry is not None and decode_request(retry).attempt == 2


def test_never_sent_is_failed_but_once_sent_is_unknown() -> None:
    refused = make_call(attempts=2)
    refused.start(0.0)
    refused.on_connection_lost(0.0, sent=False)
    refused.on_timer(refused.next_timer() or 0.0)
    refused.on_connection_lost(0.0, sent=False)
    assert refused.result is not None and refused.result.outcome is Outcome.FAILED
    mixed = make_call(attempts=2)
    mixed.start(0.0)
    mixed.on_connection_lost(0.0)  # reset after sending: maybe applied
    mixed.on_timer(mixed.next_timer() or 0.0)
    mixed.on_connection_lost(0.0, sent=False)
    assert mixed.result is not None and mixed.result.outcome is Outcome.UNKNOWN


def test_retry_budget_stops_retries() -> None:
    budget = RetryBudget(max_tokens=2, token_ratio=0.1)
    call = make_call(attempts=10, budget=budget)
    call.start(0.0)
    now = 0.0
    while not call.done:
        now = call.next_timer() or now
        call.on_timer(now)
    assert call.result is not None and call.result.outcome is Outcome.UNKNOWN
    assert call.result.attempts < 10


def test_each_attempt_is_numbered_whatever_request_the_caller_built() -> None:
    # The caller's Request is sent as is when its attempt number matches;
    # every other attempt is a copy carrying its own number.
    for first in (1, 2):
        request = Request("c0-9", "bank.deposit", {"token": "t", "amount": 5}, first)
        call = Call(
            request,
            RetrySettings(RetryPolicy.from_name("fixed", timeout=TIMEOUT), 3),
            random.Random(1),
        )
        sent = [decode_request(call.start(0.0))]
        now = 0.0
        while (at := call.next_timer()) is not None:
            now = at
            data = call.on_timer(now)
            if data is not None:
                sent.append(decode_request(data))
        assert [(s.id, s.op, s.args, s.attempt) for s in sent] == [
            ("c0-9", "bank.deposit", {"token": "t", "amount": 5}, n) for n in (1, 2, 3)
        ]
        assert call.result is not None and call.result.request is request


def test_call_result_is_immutable_and_compares_by_value() -> None:
    call = make_call()
    call.start(1.0)
    call.on_reply(ok_reply(), 1.5)
    result = call.result
    assert result is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.attempts = 2  # type: ignore[misc]
    twin = CallResult(result.request, Outcome.OK, result.reply, 1, 1.0, 1.5)
    assert twin == result and repr(twin) == repr(result)
    assert (twin.latency, twin.result, twin.error_code) == (0.5, {"balance": 10005}, None)
