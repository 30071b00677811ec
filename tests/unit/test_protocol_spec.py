"""transports/PROTOCOL.md, the behaviours it specifies, checked on the server's pipeline.

Each test names the section it checks and drives ``ServerEndpoint`` (the one
request pipeline every driver runs) with bytes, as a client in another
language would: which rejected bodies are answered and which dropped (5.1),
the error codes of missing, unknown and logged-out tokens (5.2, 7), extra
keys in ``args`` (7), a reused id with different arguments per semantics
(4.4), the demo accounts (7.1), ``numbers.check`` input (7.2), an idempotent
``bank.logout`` (7.3) and where a long error message is cut (4.2).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from services.bank import BankService
from services.ledger import Ledger
from services.numbers import NumbersService
from services.text import TextService
from transports.endpoint import ServerEndpoint
from transports.semantics import Semantics
from transports.service import Service
from transports.wire import ERROR_MESSAGE_MAX, Reply, Status, decode_reply

FAST_N = 2  # scrypt cost for tests


def message(body: bytes, kind: bytes = b"Q") -> bytes:
    """A version-1 message with a valid CRC around any body, built by hand from section 2."""
    head = b"RT\x01" + kind
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def body(
    req_id: object = "r-1", op: object = "text.convert", args: object = None, **more: Any
) -> bytes:
    fields: dict[str, Any] = {"id": req_id, "op": op, "attempt": 1}
    fields["args"] = {"text": "x"} if args is None else args
    fields.update(more)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


class Client:
    """Requests through one endpoint, as decoded replies (or None: dropped)."""

    def __init__(self, service: Service, semantics: Semantics = Semantics.AT_LEAST_ONCE) -> None:
        self.endpoint = ServerEndpoint(service, semantics)
        self._ids = 0

    def raw(self, data: bytes) -> Reply | None:
        reply = self.endpoint.handle(data, now=1.0)
        return None if reply is None else decode_reply(reply)

    def call(self, op: str, args: object, req_id: str | None = None) -> Reply:
        self._ids += 1
        reply = self.raw(message(body(req_id or f"r-{self._ids}", op, args)))
        assert reply is not None
        return reply

    def ok(self, op: str, args: object, req_id: str | None = None) -> dict[str, Any]:
        reply = self.call(op, args, req_id)
        assert reply.status is Status.OK, reply
        return dict(reply.result or {})


def error_code(reply: Reply) -> str | None:
    assert reply.status is Status.ERROR, reply
    return reply.error_code


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(scrypt_n=FAST_N, in_memory=True) as ledger:
        yield ledger


def bank(ledger: Ledger, semantics: Semantics = Semantics.AT_LEAST_ONCE) -> Client:
    return Client(BankService(ledger), semantics)


def login(client: Client, account: int = 1) -> str:
    token: str = client.ok("bank.login", {"account": account, "pin": "1234"})["token"]
    return token


# -- 5.1: which rejected requests get a MALFORMED reply, which are dropped ----------

DROPPED_BODIES = {
    "not UTF-8": b'{"id":"r-1","op":"text.convert","args":{"text":"\xff"},"attempt":1}',
    "not JSON": b'{"id":"r-1",',
    "not an object": b'["r-1"]',
    "NaN": b'{"id":"r-1","op":"text.convert","args":{"text":NaN},"attempt":1}',
    "duplicate key": b'{"id":"r-1","id":"r-1","op":"text.convert","args":{},"attempt":1}',
    "4301-digit integer": b'{"id":"r-1","op":"text.convert","args":{"n":'
    + b"9" * 4301
    + b'},"attempt":1}',
    "nesting the parser gives up on": b'{"id":"r-1","op":"text.convert","args":'
    + b"[" * 5000
    + b"]" * 5000
    + b',"attempt":1}',
    "no id": body(req_id=None),
    "id not a string": body(req_id=7),
    "id with a space": body(req_id="r 1"),
    "id too long": body(req_id="r" * 65),
}


@pytest.mark.parametrize("case", sorted(DROPPED_BODIES))
def test_a_body_without_a_trustworthy_id_is_dropped(case: str) -> None:
    client = Client(TextService())
    assert client.raw(message(DROPPED_BODIES[case])) is None
    assert client.endpoint.counters["rejected_malformed"] == 1


def _deep(levels: int) -> object:
    value: object = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


ANSWERED_BODIES = {
    "extra top-level field": body(extra=1),
    "missing op": json.dumps({"id": "r-1", "args": {}, "attempt": 1}).encode(),
    "bad op": body(op="Text.Convert"),
    "args not an object": body(args=["x"]),
    "args nested deeper than 32": body(args=_deep(33)),
    "lone surrogate": b'{"args":{"text":"\\ud800"},"attempt":1,"id":"r-1","op":"text.convert"}',
    "number too large for a float": b'{"args":{"x":1e999},"attempt":1,"id":"r-1","op":"t.c"}',
}


@pytest.mark.parametrize("case", sorted(ANSWERED_BODIES))
def test_a_body_with_a_valid_id_gets_a_malformed_reply(case: str) -> None:
    reply = Client(TextService()).raw(message(ANSWERED_BODIES[case]))
    assert reply is not None
    assert (reply.id, reply.attempt, error_code(reply)) == ("r-1", 1, "MALFORMED")


def test_deep_args_within_the_limit_are_not_malformed() -> None:
    # The limit above is the wire's, not the parser's: 32 levels pass the codec.
    reply = Client(TextService()).raw(message(body(args={"text": "x", "d": _deep(31)})))
    assert reply is not None and error_code(reply) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("attempt", [0, -1, 1_000_001, True, 1.0, "2", None])
def test_an_invalid_attempt_is_answered_with_attempt_1(attempt: object) -> None:
    reply = Client(TextService()).raw(message(body(attempt=attempt)))
    assert reply is not None
    assert (reply.id, reply.attempt, error_code(reply)) == ("r-1", 1, "MALFORMED")


def test_a_valid_attempt_is_echoed_in_the_malformed_reply() -> None:
    reply = Client(TextService()).raw(message(body(attempt=7, extra=1)))
    assert reply is not None and (reply.attempt, error_code(reply)) == (7, "MALFORMED")


@pytest.mark.parametrize("kind", [b"R", b"X"])
def test_a_reply_or_unknown_kind_is_never_answered(kind: bytes) -> None:
    client = Client(TextService())
    assert client.raw(message(body(extra=1), kind=kind)) is None
    assert client.raw(message(body(), kind=kind)) is None


@pytest.mark.parametrize(
    "data",
    [
        b"XX\x01Q" + b"\x00" * 4 + body(),  # bad magic
        message(body())[:2] + b"\x02" + message(body())[3:],  # version 2
        message(body())[:-1] + b"!",  # CRC no longer matches
        b"RT\x01Q\x00",  # shorter than the header
    ],
)
def test_header_failures_are_dropped(data: bytes) -> None:
    assert Client(TextService()).raw(data) is None


# -- 7: args hold exactly the listed keys --------------------------------------------

EXTRA_KEY_CALLS = [
    ("text", "text.convert", {"text": "x", "texts": "y"}),
    ("numbers", "numbers.check", {"n": "7", "base": 10}),
    ("bank", "bank.login", {"account": 1, "pin": "1234", "remember": True}),
    ("bank", "bank.balance", {"token": "t", "account": 1}),
    ("bank", "bank.deposit", {"token": "t", "amount": 1, "note": ""}),
    ("bank", "bank.withdraw", {"token": "t", "amount": 1, "currency": "EUR"}),
    ("bank", "bank.logout", {"token": "t", "all": True}),
]


@pytest.mark.parametrize(("service", "op", "args"), EXTRA_KEY_CALLS)
def test_an_extra_key_in_args_is_invalid_argument(
    ledger: Ledger, service: str, op: str, args: dict[str, Any]
) -> None:
    services: dict[str, Service] = {
        "text": TextService(),
        "numbers": NumbersService(),
        "bank": BankService(ledger),
    }
    reply = Client(services[service]).call(op, args)
    assert error_code(reply) == "INVALID_ARGUMENT"
    extra = list(args)[-1]  # each case's last key is the extra one
    assert extra in (reply.error_message or "")
    assert ledger.applications() == {}


# -- 5.2, 7: tokens ------------------------------------------------------------------


@pytest.mark.parametrize("op", ["bank.balance", "bank.deposit", "bank.withdraw", "bank.logout"])
def test_a_missing_or_non_string_token_is_invalid_argument(ledger: Ledger, op: str) -> None:
    client = bank(ledger)
    amount = {"amount": 5} if op in ("bank.deposit", "bank.withdraw") else {}
    assert error_code(client.call(op, amount)) == "INVALID_ARGUMENT"
    assert error_code(client.call(op, {"token": 12, **amount})) == "INVALID_ARGUMENT"
    assert error_code(client.call(op, {"token": "t" * 129, **amount})) == "INVALID_ARGUMENT"


@pytest.mark.parametrize("op", ["bank.balance", "bank.deposit", "bank.withdraw"])
def test_an_unknown_or_logged_out_token_is_unauthenticated(ledger: Ledger, op: str) -> None:
    client = bank(ledger)
    amount = {"amount": 5} if op != "bank.balance" else {}
    token = login(client)
    client.ok("bank.logout", {"token": token})
    for stale in ("", "no-such-token", token):
        assert error_code(client.call(op, {"token": stale, **amount})) == "UNAUTHENTICATED"
    assert ledger.applications() == {}


# -- 7.3: logout is idempotent -------------------------------------------------------


def test_logout_answers_ok_for_unknown_and_already_logged_out_tokens(ledger: Ledger) -> None:
    client = bank(ledger)
    token = login(client)
    assert client.ok("bank.logout", {"token": token}) == {}
    assert client.ok("bank.logout", {"token": token}) == {}  # a retried logout
    assert client.ok("bank.logout", {"token": "never-issued"}) == {}
    assert error_code(client.call("bank.balance", {"token": token})) == "UNAUTHENTICATED"


def test_logout_ends_only_its_own_session(ledger: Ledger) -> None:
    client = bank(ledger)
    first, second = login(client), login(client)
    client.ok("bank.logout", {"token": first})
    assert client.ok("bank.balance", {"token": second})["balance"] == 10_000


# -- 7.1: demo accounts --------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "name"), [(1, "Dibbyo Roy"), (2, "Abdullah Ashik"), (3, "Abir Hasan")]
)
def test_the_demo_accounts_of_a_new_ledger(ledger: Ledger, account: int, name: str) -> None:
    client = bank(ledger)
    result = client.ok("bank.login", {"account": account, "pin": "1234"})
    assert result["name"] == name
    assert client.ok("bank.balance", {"token": result["token"]}) == {
        "account": account,
        "balance": 10_000,
    }


# -- 4.4: a reused id with different arguments ---------------------------------------


def test_at_most_once_runs_a_reused_id_with_other_args(ledger: Ledger) -> None:
    client = bank(ledger, Semantics.AT_MOST_ONCE)
    token = login(client)
    first = client.ok("bank.deposit", {"token": token, "amount": 5}, req_id="dup")
    again = client.ok("bank.deposit", {"token": token, "amount": 5}, req_id="dup")
    other = client.ok("bank.deposit", {"token": token, "amount": 7}, req_id="dup")
    assert first == again == {"account": 1, "balance": 10_005}  # the cache answered
    assert other == {"account": 1, "balance": 10_012}  # executed as a new operation
    assert ledger.applications() == {"dup": 2}


@pytest.mark.parametrize(
    ("op", "amount", "account"),
    [("bank.withdraw", 5, 1), ("bank.deposit", 6, 1)],
)
def test_exactly_once_refuses_a_reused_id_with_another_operation(
    ledger: Ledger, op: str, amount: int, account: int
) -> None:
    client = bank(ledger, Semantics.EXACTLY_ONCE)
    client.ok("bank.deposit", {"token": login(client), "amount": 5}, req_id="dup")
    reply = client.call(op, {"token": login(client, account), "amount": amount}, req_id="dup")
    assert error_code(reply) == "INVALID_ARGUMENT"
    assert "already used" in (reply.error_message or "")
    assert ledger.applications() == {"dup": 1}
    assert ledger.total_balance() == 30_005


def test_exactly_once_ids_are_scoped_per_account(ledger: Ledger) -> None:
    # Issue 16: account 2 must not be refused because account 1 used the id.
    client = bank(ledger, Semantics.EXACTLY_ONCE)
    client.ok("bank.deposit", {"token": login(client), "amount": 5}, req_id="dup")
    other = client.ok("bank.deposit", {"token": login(client, 2), "amount": 5}, req_id="dup")
    assert other == {"account": 2, "balance": 10_005}
    assert ledger.applications() == {"dup": 2}
    assert ledger.total_balance() == 30_010


def test_exactly_once_answers_a_repeat_with_a_new_token_from_its_record(ledger: Ledger) -> None:
    client = bank(ledger, Semantics.EXACTLY_ONCE)
    first = client.ok("bank.deposit", {"token": login(client), "amount": 5}, req_id="dup")
    again = client.ok("bank.deposit", {"token": login(client), "amount": 5}, req_id="dup")
    assert first == again == {"account": 1, "balance": 10_005}
    assert ledger.applications() == {"dup": 1}


def test_exactly_once_executes_a_repeat_of_a_refused_request_again(ledger: Ledger) -> None:
    client = bank(ledger, Semantics.EXACTLY_ONCE)
    token = login(client)
    args = {"token": token, "amount": 10_001}
    assert error_code(client.call("bank.withdraw", args, req_id="w")) == "INSUFFICIENT_FUNDS"
    client.ok("bank.deposit", {"token": token, "amount": 1}, req_id="d")
    assert client.ok("bank.withdraw", args, req_id="w")["balance"] == 0
    assert ledger.applications() == {"d": 1, "w": 1}


# -- 7.2: numbers.check input --------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "canonical", "digits"),
    [
        (" \t\n\v\f\r42\r\n", "42", 2),
        ("+007", "7", 1),
        ("-000123", "-123", 3),
        ("-0", "0", 1),
        (-121, "-121", 3),
        ("9" * 400, "9" * 400, 400),
        ("0" * 100 + "9" * 400, "9" * 400, 400),
    ],
)
def test_numbers_check_accepts(n: object, canonical: str, digits: int) -> None:
    result = Client(NumbersService()).ok("numbers.check", {"n": n})
    assert (result["n"], result["digits"]) == (canonical, digits)


@pytest.mark.parametrize(
    "n",
    [
        "",
        " \t ",
        "\u00a012",  # a Unicode space is not whitespace here
        "12\u2003",
        "1 2",
        "1_000",
        "1.0",
        "1e5",
        "+",
        "--1",
        "\u0661\u0662",  # Arabic-Indic digits
        "9" * 401,
        "-" + "9" * 401,
        1.0,
        True,
        None,
    ],
)
def test_numbers_check_refuses(n: object) -> None:
    assert error_code(Client(NumbersService()).call("numbers.check", {"n": n})) == (
        "INVALID_ARGUMENT"
    )


def test_negative_numbers_are_neither_prime_nor_palindromes() -> None:
    client = Client(NumbersService())
    assert client.ok("numbers.check", {"n": "-7"}) | {} == {
        "n": "-7",
        "prime": False,
        "palindrome": False,
        "digits": 1,
    }
    assert client.ok("numbers.check", {"n": "0110"})["palindrome"] is False
    assert client.ok("numbers.check", {"n": "7"})["palindrome"] is True


# -- 4.2: where a long error message is cut -----------------------------------------


def test_an_error_message_over_512_characters_keeps_its_code_and_start() -> None:
    # The extra keys' names fill the message well past the limit.
    args = {"text": "x"} | {f"key{i:04}": 1 for i in range(300)}
    reply = Client(TextService()).call("text.convert", args)
    message = reply.error_message or ""
    assert error_code(reply) == "INVALID_ARGUMENT"
    assert len(message) == ERROR_MESSAGE_MAX
    assert message.startswith("unexpected argument(s): key0000, key0001")


def test_a_malformed_reply_with_a_long_message_is_still_sent() -> None:
    fields = {"id": "r-1", "op": "text.convert", "args": {}, "attempt": 1}
    fields |= {f"extra{i:04}": 1 for i in range(300)}
    reply = Client(TextService()).raw(message(json.dumps(fields).encode()))
    assert reply is not None and error_code(reply) == "MALFORMED"
    assert len(reply.error_message or "") == ERROR_MESSAGE_MAX


def test_an_error_cut_for_the_udp_budget_keeps_the_start_of_its_message() -> None:
    endpoint = ServerEndpoint(NumbersService())
    request = message(body(op="numbers.check", args={"n": "x" * 100}))
    full = decode_reply(endpoint.handle(request, now=1.0) or b"")
    budget = len(request) + 20
    cut = decode_reply(endpoint.handle(request, now=1.0, budget=budget) or b"")
    assert (cut.error_code, cut.id) == (full.error_code, full.id)
    assert 0 < len(cut.error_message or "") < len(full.error_message or "")
    assert (full.error_message or "").startswith(cut.error_message or "")
