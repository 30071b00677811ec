"""PINs (salted scrypt), the login lockout rules and session token hashes.

The ``Ledger`` runs these inside its own transactions; none begins or commits one.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

#: Consecutive failed logins that lock an account id ...
MAX_LOGIN_FAILURES = 5
#: ... for this many seconds of the caller's clock the first time; each further
#: lockout without a successful login in between doubles it ...
LOCKOUT_SECONDS = 30.0
#: ... up to this cap (5 guesses an hour: all 10^4 four-digit PINs take ~83 days).
MAX_LOCKOUT_SECONDS = 3600.0
#: A failure record untouched this long (and not locked) is forgotten, so the
#: rows kept for unknown account ids stay bounded and escalation decays.
FORGET_FAILURES_AFTER = 86_400.0

_AUTH_MESSAGE = "invalid account or PIN"
_SALT_BYTES = 16
_HASH_BYTES = 64
_SCRYPT_R = 8
_DUMMY_SALT = secrets.token_bytes(_SALT_BYTES)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _hash_pin(pin: str, salt: bytes, n: int) -> bytes:
    return hashlib.scrypt(
        pin.encode("utf-8"),
        salt=salt,
        n=n,
        r=_SCRYPT_R,
        p=1,
        maxmem=256 * _SCRYPT_R * n + 2**20,  # default 32 MiB is too small above n=2**14
        dklen=_HASH_BYTES,
    )


def _insert_account(
    conn: sqlite3.Connection, account_id: int, name: str, pin: str, balance: int, scrypt_n: int
) -> None:
    salt = secrets.token_bytes(_SALT_BYTES)
    pin_hash = _hash_pin(pin, salt, scrypt_n)
    conn.execute(
        "INSERT INTO accounts (id, name, pin_salt, pin_hash, pin_scrypt_n,"
        " opening_balance, balance) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (account_id, name, salt, pin_hash, scrypt_n, balance, balance),
    )


def _lock_remaining(conn: sqlite3.Connection, account_id: int, now: float) -> float:
    """Seconds the account id stays locked (0.0: not locked)."""
    row = conn.execute(
        "SELECT locked_until FROM login_failures WHERE account_id = ?", (account_id,)
    ).fetchone()
    if row is None or row[0] is None:
        return 0.0
    return max(0.0, float(row[0]) - now)


def _record_login(conn: sqlite3.Connection, account_id: int, pin_ok: bool, now: float) -> float:
    """Apply the lockout rules to one attempt, known account id or not.

    Returns -1.0 if the login is granted, 0.0 for a plain failure, else the
    seconds the account id is now locked for (this attempt locked it, or it was
    locked already: refused without extending the lock). The n-th lockout in a
    row lasts ``LOCKOUT_SECONDS * 2**(n-1)``, capped at ``MAX_LOCKOUT_SECONDS``.
    """
    row = conn.execute(
        "SELECT failures, locked_until, lockouts FROM login_failures WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    failures, locked_until, lockouts = row if row else (0, None, 0)
    if locked_until is not None and now < locked_until:
        return float(locked_until) - now
    if pin_ok:
        conn.execute("DELETE FROM login_failures WHERE account_id = ?", (account_id,))
        return -1.0
    failures += 1
    locked_for = 0.0
    if failures >= MAX_LOGIN_FAILURES:
        locked_for = min(LOCKOUT_SECONDS * 2.0 ** min(lockouts, 32), MAX_LOCKOUT_SECONDS)
        failures, locked_until, lockouts = 0, now + locked_for, lockouts + 1
    conn.execute(
        "DELETE FROM login_failures WHERE last_failure < ?"
        " AND (locked_until IS NULL OR locked_until < ?)",
        (now - FORGET_FAILURES_AFTER, now),
    )
    conn.execute(
        "INSERT OR REPLACE INTO login_failures"
        " (account_id, failures, locked_until, lockouts, last_failure) VALUES (?, ?, ?, ?, ?)",
        (account_id, failures, locked_until, lockouts, now),
    )
    return locked_for
