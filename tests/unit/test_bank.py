"""Unit tests of the bank service adapter: argument validation and operations."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from services.bank import BankService
from services.errors import (
    AuthFailed,
    InsufficientFunds,
    InvalidArgument,
    TransactionFailed,
    Unauthenticated,
    UnknownOperation,
)
from services.ledger import MAX_AMOUNT, Ledger
from services.programs.server_faults import AppFailures
from transports.faults import ServerFaults
from transports.service import CallContext, JsonObject, Service

FAST_N = 2**10
_ids = itertools.count()


def ctx(now: float = 0.0, request_id: str | None = None, idempotent: bool = False) -> CallContext:
    return CallContext(request_id or f"req-{next(_ids)}", now, idempotent)


@pytest.fixture(params=["file", "memory"])
def bank(request: pytest.FixtureRequest) -> Iterator[BankService]:
    """Each test over a file ledger and over the simulator's in-memory one."""
    in_memory = request.param == "memory"
    with Ledger(scrypt_n=FAST_N, session_ttl=60.0, in_memory=in_memory) as ledger:
        yield BankService(ledger)


def call(bank: BankService, op: str, context: CallContext | None = None, **args: Any) -> JsonObject:
    return bank.handle(op, args, context or ctx())


def login(bank: BankService, account: int = 1, now: float = 0.0) -> str:
    token = call(bank, "bank.login", ctx(now), account=account, pin="1234")["token"]
    assert isinstance(token, str)
    return token


def test_implements_the_service_protocol(bank: BankService) -> None:
    service: Service = bank
    assert service.name == "bank"
    # scrypt hashing blocks; a few SQLite statements run on the event loop
    assert service.blocking_ops == {"bank.login"}
    shared = BankService(bank.ledger, ledger_shared=True)  # other processes may hold the lock
    assert shared.blocking_ops == {
        "bank.login",
        "bank.balance",
        "bank.deposit",
        "bank.withdraw",
        "bank.logout",
    }


def test_login_balance_deposit_withdraw_logout(bank: BankService) -> None:
    reply = call(bank, "bank.login", account=2, pin="1234")
    assert reply["name"] == "Abdullah Ashik"
    token = reply["token"]
    assert call(bank, "bank.balance", token=token) == {"account": 2, "balance": 10_000}
    assert call(bank, "bank.deposit", token=token, amount=250) == {"account": 2, "balance": 10_250}
    assert call(bank, "bank.withdraw", token=token, amount=50) == {"account": 2, "balance": 10_200}
    assert call(bank, "bank.logout", token=token) == {}
    with pytest.raises(Unauthenticated):
        call(bank, "bank.balance", token=token)


def test_wrong_pin_and_unknown_account_answer_alike(bank: BankService) -> None:
    with pytest.raises(AuthFailed) as wrong_pin:
        call(bank, "bank.login", account=1, pin="9999")
    with pytest.raises(AuthFailed) as unknown:
        call(bank, "bank.login", account=404, pin="1234")
    assert str(wrong_pin.value) == str(unknown.value)


def test_session_expiry_uses_ctx_now(bank: BankService) -> None:
    token = login(bank, now=500.0)
    assert call(bank, "bank.balance", ctx(now=559.0), token=token)["balance"] == 10_000
    with pytest.raises(Unauthenticated):
        call(bank, "bank.deposit", ctx(now=560.0), token=token, amount=1)
    assert bank.ledger.applications() == {}


def test_unknown_token_is_unauthenticated(bank: BankService) -> None:
    for token in ("", "forged"):
        with pytest.raises(Unauthenticated):
            call(bank, "bank.withdraw", token=token, amount=1)


@pytest.mark.parametrize("op", ["bank.transfer", "text.convert", "", "BANK.LOGIN"])
def test_unknown_operation(bank: BankService, op: str) -> None:
    with pytest.raises(UnknownOperation):
        call(bank, op)


@pytest.mark.parametrize(
    ("op", "args", "message"),
    [
        ("bank.login", {"pin": "1234"}, "missing field"),
        ("bank.login", {"account": 1}, "missing field"),
        ("bank.login", {"account": True, "pin": "1234"}, "account must be an integer"),
        ("bank.login", {"account": "1", "pin": "1234"}, "account must be an integer"),
        ("bank.login", {"account": 1.0, "pin": "1234"}, "account must be an integer"),
        ("bank.login", {"account": -1, "pin": "1234"}, "account must be in"),
        ("bank.login", {"account": 2**64, "pin": "1234"}, "account must be in"),
        ("bank.login", {"account": 1, "pin": 1234}, "pin must be a string"),
        ("bank.login", {"account": 1, "pin": ""}, "pin must be 1..32"),
        ("bank.login", {"account": 1, "pin": "1" * 33}, "pin must be 1..32"),
        ("bank.login", {"account": 1, "pin": "1234", "extra": 1}, "unexpected field"),
        ("bank.balance", {}, "missing field"),
        ("bank.balance", {"token": None}, "token must be a string"),
        ("bank.balance", {"token": "x" * 129}, "token longer"),
        ("bank.logout", {"token": 7}, "token must be a string"),
        ("bank.deposit", {"token": "t"}, "missing field"),
        ("bank.deposit", {"token": "t", "amount": True}, "amount must be an integer"),
        ("bank.deposit", {"token": "t", "amount": 1.5}, "amount must be an integer"),
        ("bank.deposit", {"token": "t", "amount": "10"}, "amount must be an integer"),
        ("bank.deposit", {"token": "t", "amount": 0}, "amount must be in"),
        ("bank.withdraw", {"token": "t", "amount": -5}, "amount must be in"),
        ("bank.withdraw", {"token": "t", "amount": MAX_AMOUNT + 1}, "amount must be in"),
        ("bank.withdraw", {"token": "t", "amount": 1, "account": 2}, "unexpected field"),
        # As many fields as expected, one misspelt: missing (and unexpected).
        ("bank.deposit", {"token": "t", "amunt": 5}, "missing field"),
        ("bank.balance", {"tokn": "t"}, "missing field"),
    ],
)
def test_bad_arguments_are_refused(
    bank: BankService, op: str, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        bank.handle(op, args, ctx())
    assert bank.ledger.applications() == {}


def test_bad_amount_with_valid_token_changes_nothing(bank: BankService) -> None:
    token = login(bank)
    for amount in (-1, 0, True, 2.0, 10**20, "5"):
        with pytest.raises(InvalidArgument):
            call(bank, "bank.deposit", token=token, amount=amount)
    assert bank.ledger.balance(1) == 10_000


def test_any_mapping_of_the_right_fields_is_accepted(bank: BankService) -> None:
    token = login(bank)
    args = MappingProxyType({"token": token, "amount": 5})  # not a dict: the full checks
    assert bank.handle("bank.deposit", args, ctx()) == {"account": 1, "balance": 10_005}


def test_arguments_must_be_a_mapping(bank: BankService) -> None:
    with pytest.raises(InvalidArgument, match="object"):
        bank.handle("bank.balance", ["token"], ctx())  # type: ignore[arg-type]


def test_insufficient_funds(bank: BankService) -> None:
    token = login(bank, account=3)
    with pytest.raises(InsufficientFunds):
        call(bank, "bank.withdraw", token=token, amount=10_001)
    assert call(bank, "bank.balance", token=token)["balance"] == 10_000


def test_request_id_is_recorded_and_repeats_apply_again(bank: BankService) -> None:
    token = login(bank)
    retry = ctx(request_id="client-7:1")
    call(bank, "bank.deposit", retry, token=token, amount=10)
    call(bank, "bank.deposit", retry, token=token, amount=10)  # a retried duplicate
    assert bank.ledger.applications() == {"client-7:1": 2}
    assert bank.ledger.balance(1) == 10_020


def test_idempotent_context_applies_once(bank: BankService) -> None:
    token = login(bank)
    retry = ctx(request_id="client-7:2", idempotent=True)
    first = call(bank, "bank.withdraw", retry, token=token, amount=10)
    assert call(bank, "bank.withdraw", retry, token=token, amount=10) == first
    assert first == {"account": 1, "balance": 9_990}
    assert bank.ledger.applications() == {"client-7:2": 1}


def test_server_restart_on_same_file(tmp_path: Path) -> None:
    path = str(tmp_path / "bank.sqlite3")
    retry = ctx(request_id="r-1", idempotent=True)
    with Ledger(path, scrypt_n=FAST_N) as ledger:
        token = login(BankService(ledger))
        call(BankService(ledger), "bank.deposit", retry, token=token, amount=5)
    with Ledger(path, scrypt_n=FAST_N) as ledger:
        bank = BankService(ledger)
        assert call(bank, "bank.deposit", retry, token=token, amount=5)["balance"] == 10_005
        assert ledger.applications() == {"r-1": 1}


def test_random_failure_reaches_the_caller() -> None:
    failures = AppFailures(ServerFaults(app_fail=1.0), seed=0)
    with Ledger(scrypt_n=FAST_N, fault_point=failures) as ledger:
        bank = BankService(ledger)
        token = login(bank)
        with pytest.raises(TransactionFailed):
            call(bank, "bank.deposit", token=token, amount=1)
        assert call(bank, "bank.balance", token=token)["balance"] == 10_000
