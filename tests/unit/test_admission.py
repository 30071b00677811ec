"""Admission of expensive requests: address tokens, rate limits, the bounded queue,
and how the endpoint and a client's Call use them (no sockets)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from services.bank import BankService
from services.ledger import Ledger
from transports.admission import (
    BUSY,
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
WIDE = AdmissionLimits(source_rate=1e6, source_burst=1e6, total_rate=1e6, total_burst=1e6)


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
    assert admission.admit(Peer(HERE, validated=True), None, now=0.0) is None  # TCP
    assert admission.outstanding == 2


def test_rate_limits_per_source_and_in_total() -> None:
    limits = AdmissionLimits(source_rate=1.0, source_burst=2.0, total_rate=2.0, total_burst=3.0)
    admission = Admission(limits)

    def admit(host: str, now: float) -> str | None:
        refusal = admission.admit(Peer((host, 1), validated=True), None, now)
        if refusal is None:
            admission.release()
        return refusal.code if refusal else None

    assert [admit("127.0.0.2", 0.0) for _ in range(3)] == [None, None, BUSY]  # its burst
    assert admit("127.0.0.3", 0.0) is None  # another source: its own bucket
    assert admit("127.0.0.4", 0.0) == BUSY  # but the server's burst of 3 is spent
    assert admit("127.0.0.4", 0.5) is None  # the total refills at 2 a second
    assert admit("127.0.0.2", 1.0) is None  # and each source at 1 a second


def test_a_full_queue_refuses_at_once_until_a_place_is_released() -> None:
    admission = Admission(AdmissionLimits(max_outstanding=2, **_wide_rates()))
    trusted = Peer(HERE, validated=True)
    assert admission.admit(trusted, None, 0.0) is None
    assert admission.admit(trusted, None, 0.0) is None
    refusal = admission.admit(trusted, None, 0.0)
    assert refusal is not None and refusal.code == BUSY and "busy" in refusal.message
    admission.release()
    assert admission.admit(trusted, None, 0.0) is None


def _wide_rates() -> dict[str, float]:
    return {"source_rate": 1e6, "source_burst": 1e6, "total_rate": 1e6, "total_burst": 1e6}


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
    trusted = Peer(HERE, validated=True)
    first = endpoint.receive(_login(1, "1234", "a"), 0.0, None, trusted)
    assert isinstance(first, Request)
    busy = endpoint.receive(_login(1, "1234", "b"), 0.0, None, trusted)
    assert isinstance(busy, bytes) and decode_reply(busy).error_code == BUSY
    assert endpoint.receive(encode_request(Request("c", "bank.logout", {"token": "t"})), 0.0)
    endpoint.complete(first, 0.0)
    assert admission.outstanding == 0
    assert isinstance(endpoint.receive(_login(1, "1234", "d"), 0.0, None, trusted), Request)


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
