"""The bank's ledger: a real SQLite database shared by every server thread.

Role: the single source of truth for accounts, balances, sessions and the
audit trail the experiments read to count how often each request was applied.
It knows nothing of the wire; ``services.bank`` adapts it to the Service
protocol. It never reads a clock: every time-dependent method takes ``now``.

The parts: ``store`` (schema, connection, write transaction), ``money`` (the
statements of a deposit or withdrawal), ``auth`` (PINs, lockout, session
tokens). Every transaction begins and ends in this class (``with
self._write()``); the parts run statements inside one and never commit, so a
method here shows a whole transaction's boundaries.

Semantics worth knowing:

* Amounts are integers in minor units, ``1..MAX_AMOUNT``; a balance stays in
  ``0..MAX_BALANCE``. Refused operations (``InvalidArgument``,
  ``InsufficientFunds``, ``LimitExceeded``, ``TransactionFailed``) apply nothing.
* ``idempotent=True``: the idempotency key (the account and the request id:
  ids are scoped per account, so one account cannot block another's) is looked up in the
  same transaction that applies the change and stores the key, so a repeat,
  even after a restart, returns the first result (the balance right after the
  first execution) and applies nothing. Errors are not stored. Reusing a key
  for a different operation or amount of the same account is an ``InvalidArgument``.
* ``fault_point``, when given, is called inside the write transaction, after
  the idempotency lookup and before the change; a ``ServiceError`` it raises
  (the server's injected ``TransactionFailed``) refuses the change. So only
  requests that would really execute can fail, calls happen in commit order,
  and a repeat answered from the idempotency table never fails.
* Login: unknown account and wrong PIN give the same ``AuthFailed``, after the
  same amount of scrypt work. ``MAX_LOGIN_FAILURES`` consecutive failures lock
  the account id for ``LOCKOUT_SECONDS``, doubling with each lockout in a row
  up to ``MAX_LOCKOUT_SECONDS``; attempts while locked get ``AccountLocked``
  (saying for how long) without scrypt work or extending the lock; a success
  resets the counts. Unknown account ids are tracked and lock the same way,
  so a lock reveals nothing about which accounts exist. A PIN with a NUL is
  refused (scrypt would pad a short PIN with NULs: the comparison is exact).
* Sessions are stored as SHA-256 hashes of the token and expire at
  ``login time + session_ttl`` (no sliding renewal); they survive restarts.
  The times given as ``now`` to ``login`` and the session checks are stored:
  the caller passes a wall clock (``CallContext.wall``), which a reboot does
  not reset.
* ``deposit_for``/``withdraw_for`` (what ``services.bank`` calls) are
  ``account_for`` followed by ``deposit``/``withdraw``: same checks, same
  errors, same order. An in-memory ledger runs them as one transaction whose
  first statement reads the session, the balance and the stored result.
"""

from __future__ import annotations

import hmac
import math
import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

from services.errors import AccountLocked, AuthFailed, InvalidArgument, Unauthenticated
from services.ledger.auth import (
    _AUTH_MESSAGE,
    _DUMMY_SALT,
    _hash_pin,
    _insert_account,
    _lock_remaining,
    _record_login,
    _token_hash,
)
from services.ledger.money import (
    _SELECT_BALANCE_AND_RESULT,
    _SELECT_SESSION_BALANCE_AND_RESULT,
    MAX_AMOUNT,
    MAX_BALANCE,
    Kind,
    _change,
    idempotency_key,
)
from services.ledger.store import _connect, _create_schema, _WriteTransaction

#: The lab server's demo accounts: (id, holder name, PIN, balance).
DEMO_ACCOUNTS: tuple[tuple[int, str, str, int], ...] = (
    (1, "Dibbyo Roy", "1234", 10_000),
    (2, "Abdullah Ashik", "1234", 10_000),
    (3, "Abir Hasan", "1234", 10_000),
)

_MAX_ACCOUNT_ID = 2**63 - 1  # SQLite INTEGER range
_MAX_REQUEST_ID_LEN = 256


def show_number(value: int) -> str:
    """``value`` for an error message, bounded: a huge number is described, not echoed."""
    text = str(value)
    return text if len(text) <= 24 else f"a {len(text.lstrip('-'))}-digit number"


def _check_int(value: object, what: str, low: int, high: int) -> int:
    # bool is an int subclass; True must not mean 1 here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be in {low}..{high}, got {show_number(value)}")
    return value


def _check_pin(pin: object) -> str:
    # scrypt's PBKDF2 pads a short key with NUL bytes, so "1234\x00" would hash
    # like "1234": a PIN with a NUL is refused, which makes the comparison exact.
    if not isinstance(pin, str) or not pin:
        raise InvalidArgument("pin must be a non-empty string")
    if "\x00" in pin:
        raise InvalidArgument("pin must not contain NUL characters")
    return pin


def _check_request_id(request_id: object) -> str:
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= _MAX_REQUEST_ID_LEN:
        raise InvalidArgument(f"request id must be a string of 1..{_MAX_REQUEST_ID_LEN} chars")
    return request_id


def _locked(seconds: float) -> AccountLocked:
    whole = max(1, math.ceil(seconds))
    return AccountLocked(f"too many failed logins: account locked for {whole} s")


class Ledger:
    """Accounts, sessions and the audit trail in one SQLite file (see module doc)."""

    def __init__(
        self,
        path: str | None = None,
        *,
        demo_accounts: bool = True,
        fault_point: Callable[[], None] | None = None,
        scrypt_n: int = 2**14,
        session_ttl: float = 900.0,
        in_memory: bool = False,
    ) -> None:
        if scrypt_n < 2 or scrypt_n & (scrypt_n - 1):
            raise ValueError("scrypt_n must be a power of two >= 2")
        if not session_ttl > 0:
            raise ValueError("session_ttl must be positive")
        if in_memory and path is not None:
            raise ValueError("an in-memory ledger has no path")
        # One connection that every thread of this process shares, each use
        # under _lock (SQLite's own locking cannot separate two users of one
        # connection). SQLite admits one writer at a time anyway, and one
        # connection per thread cost more than it gave: a writer that found
        # the file locked by a sibling thread waited in SQLite's busy handler,
        # which sleeps 1, 2, 5, 10 ... ms however soon the lock frees
        # (clock_nanosleep was a bank server's top syscall, strace -c), and
        # every commit emptied the other connections' page caches (a pread per
        # page on their next use). Other processes (serve --workers, an audit)
        # open their own connection and meet the busy handler as before.
        # In memory nothing survives close(): for simulations, where the
        # process is the whole world; a file ledger is the durable default.
        self._lock = threading.RLock()
        self._in_memory = in_memory
        self._temporary = path is None and not in_memory
        if in_memory:
            path = ":memory:"
        elif path is None:
            fd, path = tempfile.mkstemp(prefix="ledger-", suffix=".sqlite3")
            os.close(fd)  # an empty file is a valid new SQLite database
        self.path: str = path
        self._fault_point = fault_point
        self._scrypt_n = scrypt_n
        self._session_ttl = session_ttl
        self._connection: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._initialise(demo_accounts)
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """The process's connection, opened on first use; use it under ``_lock``."""
        if self._closed:
            raise RuntimeError("ledger is closed")
        conn = self._connection
        if conn is None:
            conn = _connect(self.path, self._in_memory)
            self._connection = conn
        return conn

    def _one(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        """First row of an autocommit read (a consistent WAL snapshot), or None."""
        with self._lock:
            return self._conn().execute(sql, params).fetchone()

    def _all(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """Every row of an autocommit statement."""
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    def _write(self) -> _WriteTransaction:
        """A write transaction: commit on normal exit, roll back on any error."""
        return _WriteTransaction(self._lock, self._conn)

    def _initialise(self, demo_accounts: bool) -> None:
        with self._write() as conn:
            if _create_schema(conn, self.path) and demo_accounts:
                for account_id, name, pin, balance in DEMO_ACCOUNTS:
                    _insert_account(conn, account_id, name, pin, balance, self._scrypt_n)

    def close(self) -> None:
        """Close the connection; delete the file if it was temporary."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, self._connection = self._connection, None
        if conn is not None:
            conn.close()
        if self._temporary:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with suppress(FileNotFoundError):
                    os.unlink(self.path + suffix)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- accounts and sessions ----------------------------------------------

    def create_account(self, account_id: int, name: str, pin: str, balance: int) -> None:
        """Add an account (for experiments); its opening balance is not a ledger row."""
        _check_int(account_id, "account", 1, _MAX_ACCOUNT_ID)
        _check_int(balance, "balance", 0, MAX_BALANCE)
        if not isinstance(name, str) or not name:
            raise InvalidArgument("name must be a non-empty string")
        _check_pin(pin)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone():
                raise InvalidArgument(f"account {account_id} already exists")
            _insert_account(conn, account_id, name, pin, balance, self._scrypt_n)

    def login(self, account_id: int, pin: str, now: float) -> tuple[str, str]:
        """Check the PIN and open a session: returns (token, holder name).

        ``AuthFailed`` for an unknown account or a wrong PIN alike;
        ``AccountLocked`` (saying for how long) once an account id, known or
        not, has failed ``MAX_LOGIN_FAILURES`` times in a row. A locked id costs
        no scrypt work. ``now`` is a wall clock: it is stored.
        """
        _check_int(account_id, "account", 1, _MAX_ACCOUNT_ID)
        _check_pin(pin)
        with self._lock:
            locked_for = _lock_remaining(self._conn(), account_id, now)
        if locked_for > 0:
            raise _locked(locked_for)
        row = self._one(
            "SELECT name, pin_salt, pin_hash, pin_scrypt_n FROM accounts WHERE id = ?",
            (account_id,),
        )
        # Hash outside the write transaction: scrypt is slow, the lock is shared.
        if row is None:
            _hash_pin(pin, _DUMMY_SALT, self._scrypt_n)  # same work as a real check
            name, pin_ok = "", False
        else:
            name, salt, stored, n = row
            pin_ok = hmac.compare_digest(_hash_pin(pin, salt, n), stored)
        token = secrets.token_urlsafe(24)
        with self._write() as conn:
            verdict = _record_login(conn, account_id, pin_ok, now)
            if verdict < 0:
                conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
                conn.execute(
                    "INSERT INTO sessions (token_hash, account_id, expires_at) VALUES (?, ?, ?)",
                    (_token_hash(token), account_id, now + self._session_ttl),
                )
        # After commit: the failure must be counted.
        if verdict > 0:
            raise _locked(verdict)
        if verdict == 0:
            raise AuthFailed(_AUTH_MESSAGE)
        return token, str(name)

    def account_for(self, token: str, now: float) -> int:
        """The account a live session token belongs to, else ``Unauthenticated``."""
        if not isinstance(token, str):
            raise Unauthenticated("invalid or expired session")
        row = self._one(
            "SELECT account_id, expires_at FROM sessions WHERE token_hash = ?",
            (_token_hash(token),),
        )
        if row is None or now >= row[1]:
            raise Unauthenticated("invalid or expired session")
        return int(row[0])

    def logout(self, token: str) -> None:
        """End a session; unknown tokens are ignored (logout is idempotent)."""
        if not isinstance(token, str):
            return
        self._all("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    # -- money --------------------------------------------------------------

    def balance(self, account_id: int) -> int:
        """Current balance; ``InvalidArgument`` for an unknown account."""
        _check_int(account_id, "account", 1, _MAX_ACCOUNT_ID)
        row = self._one("SELECT balance FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise InvalidArgument(f"no account {account_id}")
        return int(row[0])

    def deposit(
        self, account_id: int, amount: int, request_id: str, *, idempotent: bool = False
    ) -> int:
        """Add ``amount``; returns the new balance (the first one for a repeat)."""
        return self._apply("deposit", account_id, amount, request_id, idempotent)

    def withdraw(
        self, account_id: int, amount: int, request_id: str, *, idempotent: bool = False
    ) -> int:
        """Take ``amount`` out; returns the new balance (the first one for a repeat)."""
        return self._apply("withdraw", account_id, amount, request_id, idempotent)

    def deposit_for(
        self, token: str, amount: int, request_id: str, now: float, *, idempotent: bool = False
    ) -> tuple[int, int]:
        """``account_for(token, now)`` then ``deposit``: returns (account, new balance)."""
        return self._apply_for("deposit", token, amount, request_id, now, idempotent)

    def withdraw_for(
        self, token: str, amount: int, request_id: str, now: float, *, idempotent: bool = False
    ) -> tuple[int, int]:
        """``account_for(token, now)`` then ``withdraw``: returns (account, new balance)."""
        return self._apply_for("withdraw", token, amount, request_id, now, idempotent)

    def _apply_for(
        self, kind: Kind, token: str, amount: int, request_id: str, now: float, idempotent: bool
    ) -> tuple[int, int]:
        """Session check and change; in memory, in one transaction and one SELECT.

        Same checks, in the same order, with the same errors as ``account_for``
        followed by ``_apply``. In memory the session row is read inside the
        write transaction, by the statement that also reads the balance and
        the stored result: one statement less per operation, and the session
        is checked atomically with the change. A file ledger keeps the two
        steps, so that a request with a bad token never takes the write lock
        other server threads wait on.
        """
        if (
            not self._in_memory
            or type(token) is not str
            or type(amount) is not int
            or not 1 <= amount <= MAX_AMOUNT
            or type(request_id) is not str
            or not 1 <= len(request_id) <= _MAX_REQUEST_ID_LEN
        ):  # the two steps, whose errors come in the documented order
            account_id = self.account_for(token, now)
            return account_id, self._apply(kind, account_id, amount, request_id, idempotent)
        params = (request_id if idempotent else None, _token_hash(token))
        with self._write() as conn:
            execute = conn.cursor().execute  # one cursor for the whole transaction
            row = execute(_SELECT_SESSION_BALANCE_AND_RESULT, params).fetchone()
            if row is None or now >= row[1]:
                raise Unauthenticated("invalid or expired session")
            account_id = int(row[0])
            balance = _change(
                execute,
                self._fault_point,
                kind,
                account_id,
                amount,
                request_id,
                idempotent,
                row[2],
                row[3],
            )
        return account_id, balance

    def _apply(
        self, kind: Kind, account_id: int, amount: int, request_id: str, idempotent: bool
    ) -> int:
        # Exact-type fast checks; anything unusual takes the full checks (and their errors).
        if type(account_id) is not int or not 1 <= account_id <= _MAX_ACCOUNT_ID:
            _check_int(account_id, "account", 1, _MAX_ACCOUNT_ID)
        if type(amount) is not int or not 1 <= amount <= MAX_AMOUNT:
            _check_int(amount, "amount", 1, MAX_AMOUNT)
        if type(request_id) is not str or not 1 <= len(request_id) <= _MAX_REQUEST_ID_LEN:
            _check_request_id(request_id)
        with self._write() as conn:
            execute = conn.cursor().execute  # one cursor for the whole transaction
            key = idempotency_key(account_id, request_id) if idempotent else None
            before, stored = execute(_SELECT_BALANCE_AND_RESULT, (account_id, key)).fetchone()
            balance = _change(
                execute,
                self._fault_point,
                kind,
                account_id,
                amount,
                request_id,
                idempotent,
                before,
                stored,
            )
        return balance

    # -- audit --------------------------------------------------------------

    def applications(self) -> dict[str, int]:
        """request id -> number of ledger rows (applied changes) it produced."""
        rows = self._all("SELECT request_id, COUNT(*) FROM ledger GROUP BY request_id")
        return {str(rid): int(count) for rid, count in rows}

    def rows(self) -> list[tuple[int, str, int, str, int, int]]:
        """Every ledger row, oldest first: seq, request id, account, kind, amount, balance after."""
        rows = self._all(
            "SELECT seq, request_id, account_id, kind, amount, balance_after"
            " FROM ledger ORDER BY seq"
        )
        return [(int(s), str(r), int(a), str(k), int(m), int(b)) for s, r, a, k, m, b in rows]

    def total_balance(self) -> int:
        """Sum of all balances."""
        (total,) = self._one("SELECT COALESCE(SUM(balance), 0) FROM accounts")
        return int(total)

    def accounts(self) -> list[tuple[int, str, int]]:
        """(id, holder name, balance) of every account, by id."""
        rows = self._all("SELECT id, name, balance FROM accounts ORDER BY id")
        return [(int(i), str(name), int(balance)) for i, name, balance in rows]

    def reconcile(self) -> list[int]:
        """Accounts whose balance differs from opening balance + net ledger rows."""
        rows = self._all(
            """SELECT a.id FROM accounts AS a LEFT JOIN (
                   SELECT account_id,
                          SUM(CASE kind WHEN 'deposit' THEN amount ELSE -amount END) AS net
                   FROM ledger GROUP BY account_id) AS l ON l.account_id = a.id
               WHERE a.balance != a.opening_balance + COALESCE(l.net, 0)
               ORDER BY a.id"""
        )
        return [int(account_id) for (account_id,) in rows]

    def integrity_check(self) -> str:
        """SQLite's own consistency check: ``"ok"`` when the file is sound."""
        rows = self._all("PRAGMA integrity_check")
        return "\n".join(str(message) for (message,) in rows)
