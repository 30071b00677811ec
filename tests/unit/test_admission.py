"""Admission of expensive requests: address tokens, rate limits, the bounded queue,
and how the endpoint and a client's Call use them (no sockets)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest

from services.bank import BankService
from services.ledger import Ledger
from transports.admission import (
    BUSY,
    IN_PROGRESS,
    RETRY_WITH_TOKEN,
    TOKEN_ARG,
    AddressTokens,
    Admission,
    AdmissionLimits,
    Peer,
)
from transports.call import Call, Outcome, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.retry import RetryPolicy
from transports.semantics import Semantics
from transports.wire import (
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

HERE = ("127.0.0.1", 40000)
SPOOFED = Peer(HERE, validated=False)
WIDE = AdmissionLimits(flow_rate=1e6, flow_burst=1e6)


# -- address tokens ---------------------------------------------------------------


def test_a_token_is_bound_to_its_address_and_window() -> None:
    tokens = AddressTokens(window=10.0, secret=b"k" * 32)
    token = tokens.issue(HERE, now=100.0)
    assert len(token) == 27 and tokens.check(token, HERE, now=100.0)
    assert tokens.check(token, HERE, now=119.9)  # its window and the next
    assert not tokens.check(token, HERE, now=120.0)  # then it has expired
    assert not tokens.check(token, ("127.0.0.1", 40001), now=100.0)  # another port
    assert not tokens.check(token, ("127.0.0.2", 40000), now=100.0)  # another host
    other_server = AddressTokens(window=10.0, secret=b"x" * 32)
    assert not other_server.check(token, HERE, now=100.0)
    for bad in (None, 7, "", "A" * 27, token[:-1] + ("A" if token[-1] != "A" else "B"), "!" * 27):
        assert not tokens.check(bad, HERE, now=100.0)


# -- the admission's decisions --------------------------------------------------------


def test_an_unvalidated_peer_must_echo_its_token_first() -> None:
    admission = Admission(WIDE, secret=b"s" * 32)
    refusal = admission.admit(SPOOFED, None, now=0.0)
    assert refusal is not None and refusal.code == RETRY_WITH_TOKEN
    assert admission.admit(SPOOFED, refusal.message, now=0.0) is None
    assert admission.admit(Peer(("127.0.0.1", 40001), validated=True), None, now=0.0) is None
    assert admission.outstanding == 2


def _flow(port: int, host: str = "127.0.0.1") -> Peer:
    return Peer((host, port), validated=True)


def _code(refusal: object) -> str | None:
    return getattr(refusal, "code", None)


def test_the_rate_limit_is_per_flow() -> None:
    admission = Admission(AdmissionLimits(flow_rate=1.0, flow_burst=2.0))

    def admit(peer: Peer, now: float) -> str | None:
        refusal = admission.admit(peer, None, now)
        if refusal is None:
            admission.release(peer)
        return _code(refusal)

    assert [admit(_flow(1), 0.0) for _ in range(3)] == [None, None, BUSY]  # its burst
    assert admit(_flow(2), 0.0) is None  # another port of the same host: its own bucket
    assert admit(_flow(1), 0.5) == BUSY and admit(_flow(1), 1.0) is None  # 1 a second


def test_one_flow_cannot_hold_two_places() -> None:
    admission = Admission()  # the defaults
    assert admission.admit(_flow(1), None, 0.0, "a") is None
    again = admission.admit(_flow(1), None, 0.0, "b")
    assert _code(again) == BUSY and "still running" in getattr(again, "message", "")
    # A resend of the running request is not refused: it is dropped, its reply answers it.
    assert _code(admission.admit(_flow(1), None, 0.0, "a")) == IN_PROGRESS
    assert admission.outstanding == 1
    admission.release(_flow(2))  # another flow's release frees nothing here
    assert admission.outstanding == 1
    admission.release(_flow(1))
    assert admission.outstanding == 0 and admission.admit(_flow(1), None, 0.1, "b") is None


def test_forty_busy_flows_of_a_host_leave_a_place_for_its_next_flow() -> None:
    # The flood of issue 16 over TCP: 40 connections from the user's own host,
    # each sending logins as fast as it can (10 a second each).
    admission = Admission()
    for k in range(40):
        assert admission.admit(_flow(1000 + k), None, 0.0) is None
    for tick in range(20):
        for k in range(40):
            assert _code(admission.admit(_flow(1000 + k), None, tick * 0.1)) == BUSY
    assert admission.admit(_flow(5000), None, 2.0) is None  # the user's own connection


def test_the_per_host_cap_leaves_places_for_another_host() -> None:
    limits = AdmissionLimits()
    admission = Admission(limits)
    codes = [_code(admission.admit(_flow(1000 + k), None, 0.0)) for k in range(100)]
    assert codes.count(None) == limits.max_per_host and set(codes[limits.max_per_host :]) == {BUSY}
    spare = limits.max_outstanding - limits.max_per_host
    others = [admission.admit(_flow(k, "127.0.0.2"), None, 0.0) for k in range(spare)]
    assert others == [None] * spare
    full = admission.admit(_flow(0, "127.0.0.3"), None, 0.0)  # the total cap
    assert _code(full) == BUSY and "server busy" in getattr(full, "message", "")
    admission.release(_flow(1000))
    assert admission.admit(_flow(0, "127.0.0.3"), None, 0.0) is None


def test_flows_are_remembered_in_a_bounded_lru() -> None:
    admission = Admission(AdmissionLimits(max_flows=3, flow_rate=1.0, flow_burst=1.0))
    for port in (1, 2, 3, 1, 4):  # 1 is used again, so 2 is the oldest when 4 comes
        if admission.admit(_flow(port), None, 0.0) is None:
            admission.release(_flow(port))
    assert admission.flows_remembered == 3
    assert _code(admission.admit(_flow(1), None, 0.0)) == BUSY  # remembered: bucket spent
    assert admission.admit(_flow(2), None, 0.0) is None  # forgotten: a fresh bucket
    assert admission.flows_remembered == 3


def test_a_full_queue_refuses_at_once_until_a_place_is_released() -> None:
    admission = Admission(AdmissionLimits(max_outstanding=2, **_wide_rates()))
    assert admission.admit(_flow(1), None, 0.0) is None
    assert admission.admit(_flow(2), None, 0.0) is None
    refusal = admission.admit(_flow(3), None, 0.0)
    assert refusal is not None and refusal.code == BUSY and "busy" in refusal.message
    admission.release(_flow(1))
    assert admission.admit(_flow(3), None, 0.0) is None


def _wide_rates() -> dict[str, float]:
    return {"flow_rate": 1e6, "flow_burst": 1e6}


def test_releases_from_many_threads_free_every_place() -> None:
    admission = Admission(AdmissionLimits(max_outstanding=800, max_per_host=800))
    peers = [_flow(k) for k in range(800)]
    assert all(admission.admit(peer, None, 0.0) is None for peer in peers)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(admission.release, peers))
    assert admission.outstanding == 0
    assert admission.admit(_flow(0), None, 0.0) is None


# -- the endpoint with a bank -----------------------------------------------------


def handle(endpoint: ServerEndpoint, data: bytes, now: float, peer: Peer) -> bytes:
    """``receive`` from ``peer`` then ``complete``: the reply (there always is one here)."""
    received = endpoint.receive(data, now, None, peer)
    if isinstance(received, Request):
        received = endpoint.complete(received, now)
    assert isinstance(received, bytes)
    return received


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(scrypt_n=2**10) as led:
        yield led


def _login(account: int, pin: str, request_id: str = "l1", **extra: object) -> bytes:
    args: dict[str, object] = {"account": account, "pin": pin, **extra}
    return encode_request(Request(request_id, "bank.login", args))


def test_spoofed_udp_logins_never_reach_the_ledger(ledger: Ledger) -> None:
    endpoint = ServerEndpoint(
        BankService(ledger), Semantics.EXACTLY_ONCE, admission=Admission(WIDE)
    )
    for k in range(20):  # wrong PINs from sources that never see their token
        peer = Peer(("127.0.0.9", 1000 + k), validated=False)
        reply = decode_reply(handle(endpoint, _login(3, "0000", f"s{k}"), 1.0, peer))
        assert reply.error_code == RETRY_WITH_TOKEN
    with closing(sqlite3.connect(ledger.path)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM login_failures").fetchone() == (0,)
    # A real client echoes its token and logs in; the account is not locked.
    first = decode_reply(handle(endpoint, _login(3, "1234"), 2.0, SPOOFED))
    token = first.error_message
    second = handle(endpoint, _login(3, "1234", **{TOKEN_ARG: token}), 2.0, SPOOFED)
    assert decode_reply(second).result is not None
    assert endpoint.counters["refused_retry_with_token"] == 21


def test_invalid_login_input_needs_no_admission(ledger: Ledger) -> None:
    # Refused before any hashing: the same INVALID_ARGUMENT as before, no token asked.
    endpoint = ServerEndpoint(BankService(ledger), admission=Admission(WIDE))
    for data in (_login(0, "1234"), _login(1, ""), _login(1, "x" * 33)):
        reply = decode_reply(handle(endpoint, data, 0.0, SPOOFED))
        assert reply.error_code == "INVALID_ARGUMENT"


def test_logins_beyond_the_queue_get_busy_and_completion_frees_a_place(ledger: Ledger) -> None:
    admission = Admission(AdmissionLimits(max_outstanding=1, **_wide_rates()))
    endpoint = ServerEndpoint(BankService(ledger), admission=admission)
    first = endpoint.receive(_login(1, "1234", "a"), 0.0, None, _flow(1))
    assert isinstance(first, Request)
    busy = endpoint.receive(_login(1, "1234", "b"), 0.0, None, _flow(2))
    assert isinstance(busy, bytes) and decode_reply(busy).error_code == BUSY
    assert endpoint.receive(encode_request(Request("c", "bank.logout", {"token": "t"})), 0.0)
    endpoint.complete(first, 0.0, None, _flow(1))
    assert admission.outstanding == 0
    assert isinstance(endpoint.receive(_login(1, "1234", "d"), 0.0, None, _flow(2)), Request)


def test_a_resent_login_that_is_running_is_dropped_not_refused(ledger: Ledger) -> None:
    # A UDP client resends after its timeout while its login waits for a thread:
    # the reply to the running one answers it; BUSY would report a failure
    # for a login that is about to succeed.
    endpoint = ServerEndpoint(BankService(ledger), admission=Admission(WIDE))
    first = endpoint.receive(_login(1, "1234", "a"), 0.0, None, _flow(1))
    assert isinstance(first, Request)
    assert endpoint.receive(_login(1, "1234", "a"), 1.0, None, _flow(1)) is None
    assert endpoint.counters["dropped_in_progress"] == 1
    other = endpoint.receive(_login(1, "1234", "b"), 1.0, None, _flow(1))
    assert isinstance(other, bytes) and decode_reply(other).error_code == BUSY
    reply = endpoint.complete(first, 1.0, None, _flow(1))
    assert reply is not None and decode_reply(reply).result is not None
    assert isinstance(endpoint.receive(_login(1, "1234", "b"), 1.0, None, _flow(1)), Request)


def test_service_error_messages_are_cut_to_the_wire_limit(ledger: Ledger) -> None:
    endpoint = ServerEndpoint(BankService(ledger))
    token = ledger.login(1, "1234", now=0.0)[0]
    for args in ({"token": token, "amount": 10**600}, {"token": token, "amount": -(10**4000)}):
        data = encode_request(Request("d", "bank.deposit", args))
        reply = decode_reply(endpoint.handle(data, 0.0) or b"")
        assert reply.error_code == "INVALID_ARGUMENT"
        assert "digit number" in (reply.error_message or "")
        assert len(reply.error_message or "") < 120


# -- the client's side ------------------------------------------------------------


def test_a_call_echoes_the_token_at_once_without_spending_an_attempt() -> None:
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=1.0), max_attempts=1)
    call = Call(
        Request("id-1", "bank.login", {"account": 1, "pin": "1234"}), settings, random.Random(0)
    )
    first = decode_request(call.start(0.0))
    assert TOKEN_ARG not in first.args
    asked = Reply.error("id-1", 1, RETRY_WITH_TOKEN, "T" * 27)
    assert call.on_reply(encode_reply(asked), 0.01) and not call.done
    assert call.next_timer() == 0.01  # resend now, not after a timeout
    resent = call.on_timer(0.01)
    assert resent is not None
    again = decode_request(resent)
    assert (again.id, again.attempt, again.args[TOKEN_ARG]) == ("id-1", 2, "T" * 27)
    assert call.on_reply(encode_reply(Reply.ok("id-1", 2, {"token": "s", "name": "n"})), 0.02)
    assert call.result is not None and call.result.outcome is Outcome.OK


def test_a_call_gives_up_when_asked_for_tokens_again_and_again() -> None:
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=1.0), max_attempts=3)
    call = Call(
        Request("id-2", "bank.login", {"account": 1, "pin": "1"}), settings, random.Random(0)
    )
    call.start(0.0)
    now = 0.0
    while not call.done:
        now += 0.01
        asked = Reply.error("id-2", call.attempts, RETRY_WITH_TOKEN, "T" * 27)
        call.on_reply(encode_reply(asked), now)
        if not call.done:
            call.on_timer(now)
    assert call.result is not None and call.result.outcome is Outcome.FAILED
    assert call.result.attempts == 3  # the first try and two token rounds
