"""PINs (salted scrypt), the login lockout rules and session token hashes.

The ``Ledger`` runs these inside its own transactions; none begins or commits one.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

#: Consecutive wrong PINs that lock an account ...
MAX_LOGIN_FAILURES = 5
#: ... for this many seconds of the caller's clock.
LOCKOUT_SECONDS = 30.0

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


def _record_login(conn: sqlite3.Connection, account_id: int, pin_ok: bool, now: float) -> bool:
    """Apply the lockout rules to one attempt; True if the login is granted."""
    row = conn.execute(
        "SELECT failures, locked_until FROM login_failures WHERE account_id = ?",
        (account_id,),
    ).fetchone()
    failures, locked_until = row if row else (0, None)
    if locked_until is not None and now < locked_until:
        return False
    if pin_ok:
        conn.execute("DELETE FROM login_failures WHERE account_id = ?", (account_id,))
        return True
    failures += 1
    if failures >= MAX_LOGIN_FAILURES:
        failures, locked_until = 0, now + LOCKOUT_SECONDS
    conn.execute(
        "INSERT OR REPLACE INTO login_failures (account_id, failures, locked_until)"
        " VALUES (?, ?, ?)",
        (account_id, failures, locked_until),
    )
    return False
