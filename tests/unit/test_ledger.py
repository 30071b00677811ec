"""Unit tests of the SQLite ledger: accounts, PINs, sessions, money, audit, concurrency."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pytest

from services.errors import (
    AccountLocked,
    AuthFailed,
    InsufficientFunds,
    InvalidArgument,
    LimitExceeded,
    TransactionFailed,
    Unauthenticated,
)
from services.ledger import (
    LOCKOUT_SECONDS,
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_LOCKOUT_SECONDS,
    MAX_LOGIN_FAILURES,
    Ledger,
)
from services.programs.server_faults import AppFailures
from transports.faults import ServerFaults

FAST_N = 2**10  # cheap scrypt for tests; the default is exercised once below
DEMO = [(1, "Dibbyo Roy", 10_000), (2, "Abdullah Ashik", 10_000), (3, "Abir Hasan", 10_000)]


def app_failures(probability: float, seed: int = 0) -> AppFailures:
    """The server's seeded ``app_fail`` draw, as the ledger's fault point."""
    return AppFailures(ServerFaults(app_fail=probability), seed)


@pytest.fixture(params=["file", "memory"])
def ledger(request: pytest.FixtureRequest) -> Iterator[Ledger]:
    """Each test on a file ledger and on the simulator's in-memory one."""
    with Ledger(scrypt_n=FAST_N, in_memory=request.param == "memory") as led:
        yield led


def _assert_untouched(led: Ledger) -> None:
    assert led.accounts() == DEMO
    assert led.applications() == {}


# -- lifecycle and persistence ------------------------------------------------


def test_new_ledger_has_demo_accounts(ledger: Ledger) -> None:
    assert ledger.accounts() == DEMO
    assert ledger.total_balance() == 30_000
    assert ledger.integrity_check() == "ok"
    assert ledger.reconcile() == []


def test_demo_accounts_can_be_left_out() -> None:
    with Ledger(demo_accounts=False, scrypt_n=FAST_N) as led:
        assert led.accounts() == []
        assert led.total_balance() == 0


def test_temporary_file_is_deleted_on_close() -> None:
    led = Ledger(scrypt_n=FAST_N)
    path = led.path
    led.deposit(1, 5, "r1")
    assert os.path.exists(path)
    led.close()
    assert not any(os.path.exists(path + s) for s in ("", "-wal", "-shm"))
    with pytest.raises(RuntimeError):
        led.balance(1)
    led.close()  # closing twice is harmless


def test_reopening_the_same_file_keeps_the_ledger(tmp_path: Path) -> None:
    path = str(tmp_path / "bank.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        led.create_account(7, "Extra", "9999", 50)
        led.withdraw(1, 100, "w1")
        token, _ = led.login(2, "1234", now=0.0)
    assert os.path.exists(path)  # an explicit path is never deleted
    # Reopening with another scrypt cost and no demo accounts: the file decides.
    with Ledger(path, demo_accounts=True, scrypt_n=FAST_N * 2) as led:
        assert led.accounts() == [
            (1, "Dibbyo Roy", 9_900),
            (2, "Abdullah Ashik", 10_000),
            (3, "Abir Hasan", 10_000),
            (7, "Extra", 50),
        ]
        assert led.applications() == {"w1": 1}
        assert led.account_for(token, now=1.0) == 2  # sessions survive a restart
        assert led.login(7, "9999", now=1.0)[1] == "Extra"  # old PIN hash still verifies
        assert led.integrity_check() == "ok"


# The two tables as files created before 2026-11-24 declare them.
OLD_LEDGER_TABLES = {
    "ledger": """CREATE TABLE ledger (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        kind TEXT NOT NULL CHECK (kind IN ('deposit', 'withdraw')),
        amount INTEGER NOT NULL CHECK (amount > 0),
        balance_after INTEGER NOT NULL)""",
    "idempotency": "CREATE TABLE idempotency (key TEXT PRIMARY KEY, result TEXT NOT NULL)",
}


def test_a_file_with_the_older_table_forms_still_works(tmp_path: Path) -> None:
    path = str(tmp_path / "old.sqlite3")
    with Ledger(path, scrypt_n=FAST_N):
        pass
    with closing(sqlite3.connect(path)) as conn:  # rebuild both tables the old way
        for table, create in OLD_LEDGER_TABLES.items():
            conn.execute(f"DROP TABLE {table}")
            conn.execute(create)
        conn.execute("CREATE INDEX ledger_request_id ON ledger(request_id)")
        conn.commit()
    with Ledger(path, scrypt_n=FAST_N) as led:
        assert led.deposit(1, 5, "d1", idempotent=True) == 10_005
        assert led.deposit(1, 5, "d1", idempotent=True) == 10_005  # the repeat applies nothing
        assert led.withdraw(1, 7, "w1") == 9_998
        assert led.applications() == {"d1": 1, "w1": 1}
        assert led.reconcile() == [] and led.integrity_check() == "ok"
    with closing(sqlite3.connect(path)) as conn:
        (autoincrement,) = conn.execute("SELECT seq FROM sqlite_sequence").fetchone()
        assert autoincrement == 2  # the old form's counter is kept up to date
        rows = conn.execute("SELECT seq, request_id FROM ledger ORDER BY seq").fetchall()
        assert rows == [(1, "d1"), (2, "w1")]


def test_ledger_sequence_numbers_follow_the_order_of_changes(tmp_path: Path) -> None:
    path = str(tmp_path / "bank.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        for n in range(5):
            led.deposit(1 + n % 3, 1, f"d{n}", idempotent=True)
        with pytest.raises(InsufficientFunds):
            led.withdraw(2, 10**6, "too-much")  # refused: rolled back, no row
        led.deposit(1, 1, "d5")
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT seq, request_id FROM ledger ORDER BY seq").fetchall()
    assert rows == [(n + 1, f"d{n}") for n in range(6)]


@pytest.mark.parametrize(
    "kwargs",
    [{"scrypt_n": 1000}, {"session_ttl": 0}],  # app_fail's range: test_server_faults
)
def test_bad_constructor_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Ledger(**kwargs)  # type: ignore[arg-type]


def test_create_account(ledger: Ledger) -> None:
    ledger.create_account(10, "Rich", "0000", MAX_BALANCE)
    assert ledger.balance(10) == MAX_BALANCE
    with pytest.raises(InvalidArgument, match="already exists"):
        ledger.create_account(10, "Again", "0000", 0)
    for bad in ((11, "", "1", 0), (11, "X", "", 0), (11, "X", "1", -1), (True, "X", "1", 0)):
        with pytest.raises(InvalidArgument):
            ledger.create_account(*bad)
    assert ledger.reconcile() == []  # opening balances are not ledger rows


# -- PINs, login, lockout, sessions ------------------------------------------


def test_login_returns_token_and_name(ledger: Ledger) -> None:
    token, name = ledger.login(1, "1234", now=0.0)
    assert name == "Dibbyo Roy"
    assert isinstance(token, str) and len(token) >= 32
    assert ledger.account_for(token, now=0.0) == 1
    other, _ = ledger.login(1, "1234", now=0.0)
    assert other != token  # every login opens a fresh session


def test_wrong_pin_and_unknown_account_are_indistinguishable(ledger: Ledger) -> None:
    with pytest.raises(AuthFailed) as wrong_pin:
        ledger.login(1, "4321", now=0.0)
    with pytest.raises(AuthFailed) as unknown:
        ledger.login(99, "1234", now=0.0)
    assert str(wrong_pin.value) == str(unknown.value) == "invalid account or PIN"
    assert wrong_pin.value.code == unknown.value.code


def test_default_scrypt_cost_works() -> None:
    with Ledger() as led:
        assert led.login(3, "1234", now=0.0)[1] == "Abir Hasan"
        with pytest.raises(AuthFailed):
            led.login(3, "0000", now=0.0)


def test_pin_is_stored_as_salted_scrypt_hash() -> None:
    with Ledger(scrypt_n=FAST_N) as ledger, closing(sqlite3.connect(ledger.path)) as raw:
        rows = raw.execute("SELECT pin_salt, pin_hash FROM accounts").fetchall()
    assert len(rows) == 3
    for salt, pin_hash in rows:
        assert isinstance(pin_hash, bytes) and len(pin_hash) == 64
        assert b"1234" not in pin_hash and len(salt) == 16
    # Same PIN, different salts: the hashes must all differ.
    assert len({salt for salt, _ in rows}) == len({h for _, h in rows}) == 3


def test_lockout_after_consecutive_failures_and_release(ledger: Ledger) -> None:
    for t in range(MAX_LOGIN_FAILURES):
        with pytest.raises(AuthFailed):
            ledger.login(1, "0000", now=float(t))
    locked_at = float(MAX_LOGIN_FAILURES - 1)
    with pytest.raises(AccountLocked, match="locked for 1 s"):
        ledger.login(1, "1234", now=locked_at + LOCKOUT_SECONDS - 0.01)  # right PIN, locked
    ledger.login(2, "1234", now=locked_at + 1)  # other accounts are unaffected
    assert ledger.login(1, "1234", now=locked_at + LOCKOUT_SECONDS)[1] == "Dibbyo Roy"


def _fail_until_locked(ledger: Ledger, account: int, now: float) -> float:
    """Wrong PINs until the account id locks; the lock's length in seconds."""
    for _ in range(MAX_LOGIN_FAILURES - 1):
        with pytest.raises(AuthFailed) as plain:
            ledger.login(account, "0000", now=now)
        assert type(plain.value) is AuthFailed
    with pytest.raises(AccountLocked) as locked:
        ledger.login(account, "0000", now=now)
    return float(str(locked.value).split("locked for ")[1].split(" s")[0])


def test_lockout_escalates_and_says_for_how_long(ledger: Ledger) -> None:
    now = 1_000.0
    expected = LOCKOUT_SECONDS
    for _ in range(9):
        assert _fail_until_locked(ledger, 1, now) == expected
        with pytest.raises(AccountLocked):
            ledger.login(1, "1234", now=now + expected - 0.5)  # right PIN, still locked
        now += expected
        expected = min(2 * expected, MAX_LOCKOUT_SECONDS)
    assert expected == MAX_LOCKOUT_SECONDS
    assert ledger.login(1, "1234", now=now)[1] == "Dibbyo Roy"  # success resets it all
    assert _fail_until_locked(ledger, 1, now) == LOCKOUT_SECONDS


def test_unknown_account_ids_lock_like_real_ones(ledger: Ledger) -> None:
    # A lock must not tell whether the account exists: same count, same message.
    real = _fail_until_locked(ledger, 2, 50.0)
    unknown = _fail_until_locked(ledger, 424242, 50.0)
    assert real == unknown == LOCKOUT_SECONDS
    with pytest.raises(AccountLocked) as a:
        ledger.login(2, "0000", now=51.0)
    with pytest.raises(AccountLocked) as b:
        ledger.login(424242, "0000", now=51.0)
    assert str(a.value) == str(b.value)


def test_pin_with_nul_never_matches(ledger: Ledger) -> None:
    # scrypt pads a short key with NULs: "1234\x00" hashed like "1234".
    for pin in ("1234\x00", "1234\x00\x00", "\x001234"):
        with pytest.raises(InvalidArgument, match="NUL"):
            ledger.login(1, pin, now=0.0)
    with pytest.raises(InvalidArgument, match="NUL"):
        ledger.create_account(9, "Nul", "12\x00", 0)


def test_huge_numbers_are_invalid_with_a_bounded_message(ledger: Ledger) -> None:
    for call in (
        lambda: ledger.deposit(1, 10**600, "d"),
        lambda: ledger.login(10**600, "1234", now=0.0),
        lambda: ledger.balance(-(10**600)),
    ):
        with pytest.raises(InvalidArgument) as err:
            call()
        assert len(str(err.value)) < 100 and "601-digit" in str(err.value)


def test_old_files_are_upgraded_and_their_monotonic_times_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "v1.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        token, _ = led.login(1, "1234", now=500.0)
        led.deposit(2, 5, "d", idempotent=True)
    with closing(sqlite3.connect(path)) as conn:  # back to the version 1 layout
        conn.execute("DROP INDEX login_failures_last_failure")
        conn.execute("ALTER TABLE login_failures DROP COLUMN lockouts")
        conn.execute("ALTER TABLE login_failures DROP COLUMN last_failure")
        conn.execute("UPDATE idempotency SET key = 'd'")
        conn.execute("INSERT INTO login_failures VALUES (3, 0, 530.0)")  # a monotonic lock
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
    with Ledger(path, scrypt_n=FAST_N) as led:
        with pytest.raises(Unauthenticated):
            led.account_for(token, now=501.0)  # a monotonic expiry means nothing now
        assert led.login(3, "1234", now=510.0)[1] == "Abir Hasan"  # the lock was lifted
        assert led.deposit(2, 5, "d", idempotent=True) == 10_005  # the key kept its account
        assert led.applications() == {"d": 1}


def test_success_resets_the_failure_count(ledger: Ledger) -> None:
    for _ in range(2):
        for _ in range(MAX_LOGIN_FAILURES - 1):
            with pytest.raises(AuthFailed):
                ledger.login(2, "0000", now=0.0)
        ledger.login(2, "1234", now=0.0)  # would be locked if the count carried over


def test_lockout_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "bank.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        for _ in range(MAX_LOGIN_FAILURES):
            with pytest.raises(AuthFailed):
                led.login(3, "0000", now=100.0)
    with Ledger(path, scrypt_n=FAST_N) as led, pytest.raises(AuthFailed):
        led.login(3, "1234", now=101.0)


def test_session_expires_and_logout_ends_it() -> None:
    with Ledger(scrypt_n=FAST_N, session_ttl=60.0) as led:
        token, _ = led.login(1, "1234", now=1000.0)
        assert led.account_for(token, now=1059.9) == 1
        with pytest.raises(Unauthenticated):
            led.account_for(token, now=1060.0)
        token, _ = led.login(1, "1234", now=2000.0)
        led.logout(token)
        led.logout(token)  # idempotent
        with pytest.raises(Unauthenticated):
            led.account_for(token, now=2000.0)
        with pytest.raises(Unauthenticated):
            led.account_for("not-a-token", now=2000.0)


# -- deposits and withdrawals -------------------------------------------------


def test_deposit_and_withdraw_update_balance_and_ledger(ledger: Ledger) -> None:
    assert ledger.deposit(1, 500, "d1") == 10_500
    assert ledger.withdraw(1, 10_500, "w1") == 0
    assert ledger.balance(1) == 0
    assert ledger.applications() == {"d1": 1, "w1": 1}
    assert ledger.reconcile() == []


BAD_AMOUNTS = [-1, 0, True, False, 1.5, 5.0, MAX_AMOUNT + 1, 10**30, "5", None]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
@pytest.mark.parametrize("kind", ["deposit", "withdraw"])
def test_bad_amounts_are_refused_and_change_nothing(
    ledger: Ledger, kind: str, amount: object
) -> None:
    with pytest.raises(InvalidArgument, match="amount"):
        getattr(ledger, kind)(1, amount, "r1")
    _assert_untouched(ledger)


def test_bad_account_or_request_id_is_refused(ledger: Ledger) -> None:
    for account, request_id in ((99, "r"), (True, "r"), (0, "r"), (1, ""), (1, 5), (1, "x" * 300)):
        with pytest.raises(InvalidArgument):
            ledger.deposit(account, 1, request_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="no account"):
        ledger.balance(99)
    _assert_untouched(ledger)


def test_largest_amount_is_accepted(ledger: Ledger) -> None:
    assert ledger.deposit(1, MAX_AMOUNT, "big") == 10_000 + MAX_AMOUNT


def test_balance_limit(ledger: Ledger) -> None:
    ledger.create_account(9, "Near limit", "1234", MAX_BALANCE - 5)
    with pytest.raises(LimitExceeded):
        ledger.deposit(9, 6, "over")
    assert ledger.balance(9) == MAX_BALANCE - 5
    assert ledger.deposit(9, 5, "exact") == MAX_BALANCE
    assert ledger.applications() == {"exact": 1}


def test_insufficient_funds_changes_nothing(ledger: Ledger) -> None:
    with pytest.raises(InsufficientFunds):
        ledger.withdraw(2, 10_001, "w1")
    with pytest.raises(InsufficientFunds):
        ledger.withdraw(2, 10_001, "w2", idempotent=True)
    _assert_untouched(ledger)


# -- the lab's random "Transaction failed" -------------------------------------


def test_certain_failure_applies_nothing() -> None:
    with Ledger(scrypt_n=FAST_N, fault_point=app_failures(1.0)) as led:
        for idempotent in (False, True):
            with pytest.raises(TransactionFailed, match="Transaction failed"):
                led.deposit(1, 10, "d", idempotent=idempotent)
            with pytest.raises(TransactionFailed):
                led.withdraw(1, 10, "w", idempotent=idempotent)
        _assert_untouched(led)


def _outcomes(seed: int) -> list[bool]:
    with Ledger(scrypt_n=FAST_N, fault_point=app_failures(0.5, seed)) as led:
        outcomes = []
        for i in range(40):
            try:
                led.deposit(1, 1, f"r{i}")
                outcomes.append(True)
            except TransactionFailed:
                outcomes.append(False)
        assert led.balance(1) == 10_000 + sum(outcomes)
        return outcomes


def test_seeded_failures_are_reproducible() -> None:
    first = _outcomes(seed=42)
    assert first == _outcomes(seed=42)
    assert 0 < sum(first) < len(first)  # both outcomes occur
    assert first != _outcomes(seed=43)


# -- exactly-once (idempotent) requests ------------------------------------


def test_non_idempotent_repeat_applies_twice(ledger: Ledger) -> None:
    ledger.deposit(1, 100, "dup")
    assert ledger.deposit(1, 100, "dup") == 10_200
    assert ledger.applications() == {"dup": 2}


def test_idempotent_repeat_applies_once_and_returns_first_result(ledger: Ledger) -> None:
    assert ledger.deposit(1, 100, "once", idempotent=True) == 10_100
    ledger.deposit(1, 1, "other")
    assert ledger.deposit(1, 100, "once", idempotent=True) == 10_100  # the first answer
    assert ledger.withdraw(2, 50, "w", idempotent=True) == ledger.withdraw(
        2, 50, "w", idempotent=True
    )
    assert ledger.balance(1) == 10_101
    assert ledger.balance(2) == 9_950
    assert ledger.applications() == {"once": 1, "other": 1, "w": 1}


def test_idempotency_key_reused_for_another_operation_is_refused(ledger: Ledger) -> None:
    ledger.deposit(1, 100, "k", idempotent=True)
    for method, account, amount in (
        (ledger.deposit, 1, 200),
        (ledger.withdraw, 1, 100),
    ):
        with pytest.raises(InvalidArgument, match="already used"):
            method(account, amount, "k", idempotent=True)
    assert ledger.applications() == {"k": 1}


def test_idempotency_keys_are_scoped_per_account(ledger: Ledger) -> None:
    # Account 3 using an id first must not block account 2 (nor answer for it).
    assert ledger.deposit(3, 100, "shared-id", idempotent=True) == 10_100
    assert ledger.deposit(2, 100, "shared-id", idempotent=True) == 10_100
    assert ledger.deposit(2, 100, "shared-id", idempotent=True) == 10_100  # a repeat
    token, _ = ledger.login(1, "1234", now=0.0)
    assert ledger.deposit_for(token, 7, "shared-id", 1.0, idempotent=True) == (1, 10_007)
    assert ledger.balance(2) == ledger.balance(3) == 10_100
    assert ledger.applications() == {"shared-id": 3}


def test_refused_idempotent_request_can_succeed_later(ledger: Ledger) -> None:
    with pytest.raises(InsufficientFunds):
        ledger.withdraw(3, 15_000, "big", idempotent=True)
    ledger.deposit(3, 5_000, "top-up")
    assert ledger.withdraw(3, 15_000, "big", idempotent=True) == 0  # the error was not stored
    assert ledger.applications() == {"top-up": 1, "big": 1}


def test_idempotency_survives_restart_and_repeat_never_fails(tmp_path: Path) -> None:
    path = str(tmp_path / "bank.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        assert led.deposit(1, 250, "req-1", idempotent=True) == 10_250
    # The restarted server always fails new work, but a repeat is answered from
    # the idempotency table before the failure draw.
    with Ledger(path, scrypt_n=FAST_N, fault_point=app_failures(1.0)) as led:
        assert led.deposit(1, 250, "req-1", idempotent=True) == 10_250
        with pytest.raises(TransactionFailed):
            led.deposit(1, 250, "req-2", idempotent=True)
        assert led.balance(1) == 10_250
        assert led.applications() == {"req-1": 1}
        assert led.integrity_check() == "ok"


# -- concurrency --------------------------------------------------------------


def test_concurrent_deposits_lose_no_update(tmp_path: Path) -> None:
    threads, per_thread = 8, 200
    with Ledger(str(tmp_path / "bank.sqlite3"), scrypt_n=FAST_N) as led:

        def work(worker: int) -> None:
            for i in range(per_thread):
                led.deposit(1, 1, f"t{worker}-{i}")

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, range(threads)))
        assert led.balance(1) == 10_000 + threads * per_thread
        assert len(led.applications()) == threads * per_thread
        assert led.reconcile() == []
        assert led.integrity_check() == "ok"


def test_concurrent_withdrawals_never_overdraw(ledger: Ledger) -> None:
    ledger.create_account(5, "Target", "1234", 1_000)
    amount, threads, attempts = 7, 8, 40  # demand 2240 > 1000
    start = threading.Barrier(threads)

    def work(worker: int) -> int:
        start.wait()  # maximise overlap
        taken = 0
        for i in range(attempts):
            try:
                ledger.withdraw(5, amount, f"w{worker}-{i}")
                taken += amount
            except InsufficientFunds:
                pass
        return taken

    with ThreadPoolExecutor(max_workers=threads) as pool:
        taken = sum(pool.map(work, range(threads)))
    balance = ledger.balance(5)
    assert balance == 1_000 - taken
    assert 0 <= balance < amount  # drained as far as whole withdrawals allow
    assert ledger.reconcile() == []


def test_concurrent_idempotent_repeats_apply_once(ledger: Ledger) -> None:
    threads = 8
    start = threading.Barrier(threads)

    def work(_: int) -> int:
        start.wait()
        return ledger.deposit(2, 30, "same-request", idempotent=True)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = set(pool.map(work, range(threads)))
    assert results == {10_030}
    assert ledger.applications() == {"same-request": 1}


# -- session-bound deposits and withdrawals (deposit_for / withdraw_for) -------


def test_stored_idempotent_result_keeps_its_on_disk_format(tmp_path: Path) -> None:
    # The idempotency table's JSON is read back after restarts (and by older
    # code): it must stay exactly json.dumps(result, sort_keys=True).
    path = str(tmp_path / "bank.sqlite3")
    with Ledger(path, scrypt_n=FAST_N) as led:
        led.deposit(1, 250, "d", idempotent=True)
        led.withdraw(2, 7, "w", idempotent=True)
    with closing(sqlite3.connect(path)) as conn:
        stored = dict(conn.execute("SELECT key, result FROM idempotency").fetchall())
    assert stored == {
        "1:d": json.dumps(
            {"kind": "deposit", "account": 1, "amount": 250, "balance": 10_250}, sort_keys=True
        ),
        "2:w": json.dumps(
            {"kind": "withdraw", "account": 2, "amount": 7, "balance": 9_993}, sort_keys=True
        ),
    }


def test_session_bound_operations_match_the_two_steps(ledger: Ledger) -> None:
    token, _ = ledger.login(2, "1234", now=0.0)
    assert ledger.deposit_for(token, 100, "d", 1.0) == (2, 10_100)
    assert ledger.withdraw_for(token, 50, "w", 1.0, idempotent=True) == (2, 10_050)
    ledger.deposit(2, 1, "between")
    # A repeat answers the first result and applies nothing.
    assert ledger.withdraw_for(token, 50, "w", 1.0, idempotent=True) == (2, 10_050)
    with pytest.raises(InvalidArgument, match="already used"):
        ledger.deposit_for(token, 50, "w", 1.0, idempotent=True)
    assert ledger.balance(2) == 10_051
    assert ledger.applications() == {"d": 1, "w": 1, "between": 1}
    assert ledger.reconcile() == []


def test_session_bound_operations_check_the_session_first() -> None:
    with Ledger(scrypt_n=FAST_N, session_ttl=60.0, in_memory=True) as led:
        token, _ = led.login(1, "1234", now=1000.0)
        led.deposit_for(token, 5, "first", 1000.0, idempotent=True)
        # Expired, unknown or logged out: Unauthenticated, even for a repeat
        # and before the request id or the account is looked at.
        for bad_token, now, request_id in (
            (token, 1060.0, "first"),
            (token, 1060.0, "x" * 300),
            ("not-a-token", 1000.0, "r"),
            ("not-a-token", 1000.0, ""),
        ):
            for method in (led.deposit_for, led.withdraw_for):
                with pytest.raises(Unauthenticated):
                    method(bad_token, 5, request_id, now, idempotent=True)
        # A live session with a bad request id or amount: InvalidArgument.
        with pytest.raises(InvalidArgument, match="request id"):
            led.deposit_for(token, 5, "x" * 300, 1059.0)
        with pytest.raises(InvalidArgument, match="amount"):
            led.withdraw_for(token, 0, "r", 1059.0)
        led.logout(token)
        with pytest.raises(Unauthenticated):
            led.deposit_for(token, 5, "r", 1059.0)
        assert led.applications() == {"first": 1}
        assert led.balance(1) == 10_005


def test_session_bound_refusals_change_nothing(ledger: Ledger) -> None:
    ledger.create_account(9, "Near limit", "1234", MAX_BALANCE - 5)
    rich, _ = ledger.login(9, "1234", now=0.0)
    poor, _ = ledger.login(3, "1234", now=0.0)
    for idempotent in (False, True):
        with pytest.raises(InsufficientFunds):
            ledger.withdraw_for(poor, 10_001, f"w{idempotent}", 0.0, idempotent=idempotent)
        with pytest.raises(LimitExceeded):
            ledger.deposit_for(rich, 6, f"d{idempotent}", 0.0, idempotent=idempotent)
    assert ledger.applications() == {}
    # The refusals were not stored: the same ids succeed once possible.
    assert ledger.deposit_for(rich, 5, "dTrue", 0.0, idempotent=True) == (9, MAX_BALANCE)
    assert ledger.withdraw_for(poor, 10_000, "wTrue", 0.0, idempotent=True) == (3, 0)
    assert ledger.reconcile() == []


@pytest.mark.parametrize("in_memory", [False, True])
def test_session_bound_failures_draw_like_the_two_steps(in_memory: bool) -> None:
    # Same seed, same draws, same failures: whichever path runs, only requests
    # that would really execute draw, and a repeat never fails.
    def run(bound: bool) -> list[object]:
        failures = app_failures(0.5, seed=7)
        with Ledger(scrypt_n=FAST_N, fault_point=failures, in_memory=in_memory) as led:
            token, _ = led.login(1, "1234", now=0.0)
            seen: list[object] = []
            for i in range(30):
                request_id = f"r{i // 2}"  # each id twice: the repeat of a success never draws
                try:
                    if bound:
                        seen.append(led.deposit_for(token, 1, request_id, 0.0, idempotent=True))
                    else:
                        seen.append((1, led.deposit(1, 1, request_id, idempotent=True)))
                except TransactionFailed:
                    seen.append("failed")
            assert led.reconcile() == []
            seen.append(led.applications())
            return seen

    two_steps = run(bound=False)
    assert run(bound=True) == two_steps
    assert "failed" in two_steps
