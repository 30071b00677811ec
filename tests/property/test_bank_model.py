"""Stateful model test: the bank behind a ServerEndpoint against a dict of balances.

Hypothesis's ``RuleBasedStateMachine`` drives the real stack (wire codec,
``ServerEndpoint`` with one call semantics, ``BankService``, SQLite ``Ledger``)
with deposits, withdrawals (overdrafts included), retries of earlier
requests, server crashes (the process restarts: the ledger file is reopened,
the in-memory reply cache is gone) and the passing of time (reply-cache
expiry). A plain model predicts every reply byte for byte and how often the
ledger applied each request; invariants check the money after every step.

The model encodes each semantics' mechanism, not its promise: at-least-once
re-executes a retry, at-most-once answers it from a cache that a crash or
expiry empties, exactly-once answers a retry of a success from the durable
idempotency table. The promises are then invariants: no operation is applied
twice under exactly-once, ever, nor under at-most-once while the server has
forgotten nothing.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar
from unittest import TestCase

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from services.bank import BankService
from services.errors import InsufficientFunds
from services.ledger import Ledger
from tests.property.budget import examples
from transports.endpoint import ServerEndpoint
from transports.semantics import ReplyCache, Semantics
from transports.wire import Reply, Request, Status, decode_reply, encode_request

SCRYPT_N = 2**10
PIN = "0000"
OPENING = {1: 50, 2: 0}  # small balances: overdraft attempts are common
RETENTION = 30.0  # reply-cache retention (s); the "wait" rule can outlast it
STEP = 1.0  # virtual seconds per request


@dataclass(frozen=True)
class Op:
    """One logical operation (one request id); a retry resends it."""

    request_id: str
    kind: str  # "deposit" | "withdraw"
    account: int
    amount: int


@functools.cache
def _template() -> tuple[Path, dict[int, str]]:
    """A ledger file with the accounts and their sessions, built once per process.

    Each machine copies it: building a ledger (schema, scrypt, first
    checkpoint) costs ~25 ms, a copy ~1 ms.
    """
    directory = Path(tempfile.mkdtemp(prefix="bank-model-template-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "template.sqlite3"
    with Ledger(str(path), demo_accounts=False, scrypt_n=SCRYPT_N, session_ttl=1e9) as ledger:
        tokens = {}
        for account, balance in OPENING.items():
            ledger.create_account(account, f"holder {account}", PIN, balance)
            tokens[account] = ledger.login(account, PIN, now=0.0)[0]
    return path, tokens


class BankMachine(RuleBasedStateMachine):
    """The bank under one semantics (set by each subclass) against a model."""

    semantics: ClassVar[Semantics]

    ops = Bundle("ops")

    def __init__(self) -> None:
        super().__init__()
        template, self.tokens = _template()
        self.workdir = Path(tempfile.mkdtemp(prefix="bank-model-"))
        self.path = self.workdir / "ledger.sqlite3"
        shutil.copyfile(template, self.path)
        self.ledger = self._open()
        self.now = 0.0
        self.ids = itertools.count()
        # -- the model --
        self.balances = dict(OPENING)
        self.applied: Counter[str] = Counter()  # request id -> times applied
        self.net = 0  # deposits minus withdrawals applied
        self.attempts: Counter[str] = Counter()
        self.cache: dict[str, tuple[Reply, float]] = {}  # at-most-once: id -> reply, stored at
        self.first_result: dict[str, int] = {}  # exactly-once: id -> balance after 1st success
        self.forgot = False  # a crash or expiry lost a cached reply (at-most-once)

    def _open(self) -> Ledger:
        ledger = Ledger(str(self.path), scrypt_n=SCRYPT_N, session_ttl=1e9)
        cache = ReplyCache(retention=RETENTION)
        self.endpoint = ServerEndpoint(BankService(ledger), self.semantics, reply_cache=cache)
        return ledger

    def teardown(self) -> None:
        try:
            assert self.ledger.integrity_check() == "ok"
        finally:
            self.ledger.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- talking to the server ----------------------------------------------------

    def send(self, op: str, args: dict[str, Any], request_id: str, attempt: int) -> Reply:
        self.now += STEP
        data = self.endpoint.handle(
            encode_request(Request(request_id, op, args, attempt)), self.now
        )
        assert data is not None  # a valid request is always answered
        reply = decode_reply(data)
        assert (reply.id, reply.attempt) == (request_id, attempt)
        return reply

    def submit(self, op: Op) -> None:
        """Send ``op`` (again) and check the reply against the model's prediction."""
        self.attempts[op.request_id] += 1
        attempt = self.attempts[op.request_id]
        args = {"token": self.tokens[op.account], "amount": op.amount}
        reply = self.send(f"bank.{op.kind}", args, op.request_id, attempt)
        expected = self.predict(op, attempt, self.now)
        assert reply == expected, f"{op}: got {reply}, model says {expected}"

    # -- the model ------------------------------------------------------------------

    def predict(self, op: Op, attempt: int, now: float) -> Reply:
        if self.semantics is Semantics.AT_MOST_ONCE:
            self.expire(now)
            if op.request_id in self.cache:
                cached, _ = self.cache[op.request_id]
                return replace(cached, attempt=attempt)  # as the endpoint answers a hit
            reply = self.execute(op, attempt)
            self.cache[op.request_id] = (reply, now)
            return reply
        if self.semantics is Semantics.EXACTLY_ONCE and op.request_id in self.first_result:
            balance = self.first_result[op.request_id]
            return Reply.ok(op.request_id, attempt, {"account": op.account, "balance": balance})
        reply = self.execute(op, attempt)
        if self.semantics is Semantics.EXACTLY_ONCE and reply.status is Status.OK:
            assert reply.result is not None
            self.first_result[op.request_id] = reply.result["balance"]
        return reply

    def execute(self, op: Op, attempt: int) -> Reply:
        """The bank's own logic: apply once, or refuse an overdraft."""
        balance = self.balances[op.account]
        if op.kind == "withdraw" and balance < op.amount:
            return Reply.error(op.request_id, attempt, InsufficientFunds.code, "insufficient funds")
        signed = op.amount if op.kind == "deposit" else -op.amount
        self.balances[op.account] = balance + signed
        self.net += signed
        self.applied[op.request_id] += 1
        result = {"account": op.account, "balance": balance + signed}
        return Reply.ok(op.request_id, attempt, result)

    def expire(self, now: float) -> None:
        # ReplyCache drops an entry once ``now - stored_at >= retention``.
        for request_id, (_, stored_at) in list(self.cache.items()):
            if now - stored_at >= RETENTION:
                del self.cache[request_id]
                self.forgot = True

    # -- rules ------------------------------------------------------------------------

    def new_op(self, kind: str, account: int, amount: int) -> Op:
        op = Op(f"{kind[0]}{next(self.ids)}", kind, account, amount)
        self.submit(op)
        return op

    @initialize(target=ops, account=st.sampled_from(sorted(OPENING)), amount=st.integers(1, 40))
    def first_deposit(self, account: int, amount: int) -> Op:
        return self.new_op("deposit", account, amount)

    @rule(target=ops, account=st.sampled_from(sorted(OPENING)), amount=st.integers(1, 40))
    def deposit(self, account: int, amount: int) -> Op:
        return self.new_op("deposit", account, amount)

    @rule(target=ops, account=st.sampled_from(sorted(OPENING)), amount=st.integers(1, 80))
    def withdraw(self, account: int, amount: int) -> Op:
        # Up to 80 against balances that start at 0 and 50: many are refused.
        return self.new_op("withdraw", account, amount)

    @rule(op=ops)
    def retry(self, op: Op) -> None:
        """The client resends an earlier request: same id, next attempt number."""
        self.submit(op)

    @rule()
    def crash(self) -> None:
        """The server process dies and restarts: the ledger file survives, memory does not."""
        self.ledger.close()
        self.ledger = self._open()
        if self.cache:
            self.forgot = True
        self.cache.clear()

    @rule(seconds=st.floats(1.0, 2 * RETENTION))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @rule(account=st.sampled_from(sorted(OPENING)))
    def balance(self, account: int) -> None:
        request_id = f"b{next(self.ids)}"
        reply = self.send("bank.balance", {"token": self.tokens[account]}, request_id, 1)
        assert reply.result == {"account": account, "balance": self.balances[account]}

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def balances_match_the_model_and_never_go_negative(self) -> None:
        accounts = {account: balance for account, _, balance in self.ledger.accounts()}
        assert accounts == self.balances
        assert all(balance >= 0 for balance in accounts.values())

    @invariant()
    def money_is_conserved(self) -> None:
        assert self.ledger.total_balance() == sum(OPENING.values()) + self.net
        assert self.ledger.reconcile() == []

    @invariant()
    def applications_match_the_model(self) -> None:
        applications = self.ledger.applications()
        assert applications == {rid: n for rid, n in self.applied.items() if n}
        if self.promises_at_most_once():
            assert all(n == 1 for n in applications.values()), applications

    def promises_at_most_once(self) -> bool:
        """Whether the semantics still guarantees that nothing was applied twice."""
        if self.semantics is Semantics.AT_MOST_ONCE:
            return not self.forgot  # the guarantee lives in memory
        return self.semantics is Semantics.EXACTLY_ONCE


# One machine per semantics. The derandomized CI profile makes them repeatable.
MODEL_SETTINGS = settings(
    max_examples=examples(50),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _test_case(machine: type[BankMachine]) -> type[TestCase]:
    case = machine.TestCase
    case.settings = MODEL_SETTINGS
    return case


class MaybeBank(BankMachine):
    semantics = Semantics.MAYBE


class AtLeastOnceBank(BankMachine):
    semantics = Semantics.AT_LEAST_ONCE


class AtMostOnceBank(BankMachine):
    semantics = Semantics.AT_MOST_ONCE


class ExactlyOnceBank(BankMachine):
    semantics = Semantics.EXACTLY_ONCE


TestMaybeBank = _test_case(MaybeBank)
TestAtLeastOnceBank = _test_case(AtLeastOnceBank)
TestAtMostOnceBank = _test_case(AtMostOnceBank)
TestExactlyOnceBank = _test_case(ExactlyOnceBank)


# -- the invariants have teeth: a broken promise is found and shrunk -----------------

FIND = settings(
    MODEL_SETTINGS,
    derandomize=True,
    database=None,
    max_examples=200,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
)


class AtLeastOnceClaimingAtMostOnce(AtLeastOnceBank):
    def promises_at_most_once(self) -> bool:
        return True


class AtMostOnceClaimingToSurviveCrashes(AtMostOnceBank):
    def promises_at_most_once(self) -> bool:
        return True


def _minimal_steps(machine: type[BankMachine]) -> str:
    """Run ``machine`` expecting a failure; return the shrunk steps Hypothesis prints."""
    with pytest.raises(AssertionError) as excinfo:
        run_state_machine_as_test(machine, settings=FIND)
    return "\n".join(getattr(excinfo.value, "__notes__", []))


def test_a_retry_is_applied_twice_under_at_least_once() -> None:
    steps = _minimal_steps(AtLeastOnceClaimingAtMostOnce)
    assert "state.first_deposit(" in steps and "state.retry(op=ops_0)" in steps
    assert "state.crash()" not in steps and "state.wait(" not in steps


def test_a_crash_makes_at_most_once_apply_a_retry_twice() -> None:
    steps = _minimal_steps(AtMostOnceClaimingToSurviveCrashes)
    assert steps.index("state.first_deposit(") < steps.index("state.crash()")
    assert steps.index("state.crash()") < steps.index("state.retry(op=ops_0)")
