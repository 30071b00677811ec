"""Money: the statements of a deposit or withdrawal and the rest of its write transaction.

The ``Ledger`` opens the transaction and reads the balance and the stored
result; ``_change`` applies the change (or replays the stored result, or says
why it was refused) on that transaction's cursor, and never commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, Literal

from services.errors import InsufficientFunds, InvalidArgument, LimitExceeded

#: Largest amount of a single deposit or withdrawal, in minor units.
MAX_AMOUNT = 10**9
#: Largest balance an account may hold, in minor units.
MAX_BALANCE = 10**15

# The statements of a deposit or withdrawal (``_change``).
# ``key = NULL`` matches nothing: a non-idempotent request passes None for the key.
_SELECT_SESSION_BALANCE_AND_RESULT = (
    "SELECT s.account_id, s.expires_at,"
    " (SELECT balance FROM accounts WHERE id = s.account_id),"
    " (SELECT result FROM idempotency WHERE key = s.account_id || ':' || ?)"
    " FROM sessions AS s WHERE s.token_hash = ?"
)
_SELECT_BALANCE_AND_RESULT = (
    "SELECT (SELECT balance FROM accounts WHERE id = ?),"
    " (SELECT result FROM idempotency WHERE key = ?)"
)
_DEPOSIT = "UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance <= ?"
_WITHDRAW = "UPDATE accounts SET balance = balance - ? WHERE id = ? AND balance >= ?"
_SELECT_BALANCE = "SELECT balance FROM accounts WHERE id = ?"
_INSERT_LEDGER = (
    "INSERT INTO ledger (request_id, account_id, kind, amount, balance_after)"
    " VALUES (?, ?, ?, ?, ?)"
)
_INSERT_IDEMPOTENCY = "INSERT INTO idempotency (key, result) VALUES (?, ?)"

Kind = Literal["deposit", "withdraw"]


def idempotency_key(account_id: int, request_id: str) -> str:
    """An exactly-once key: request ids are scoped per account, so one account's
    ids can never block (or be answered by) another account's operations."""
    return f"{account_id}:{request_id}"


def _change(
    execute: Callable[[str, tuple[object, ...]], sqlite3.Cursor],
    fault_point: Callable[[], None] | None,
    kind: Kind,
    account_id: int,
    amount: int,
    request_id: str,
    idempotent: bool,
    before: int | None,
    stored: str | None,
) -> int:
    """The rest of a deposit's or withdrawal's write transaction; returns the balance.

    ``before`` (the balance, None for no such account) and ``stored`` (the
    idempotency table's result for ``request_id``, None if absent or not
    ``idempotent``) were read by one SELECT in this transaction. Then the
    conditional UPDATE, the ledger INSERT and, if idempotent, the
    idempotency INSERT. The balance is read *before* the UPDATE: the
    transaction holds the write lock since ``BEGIN IMMEDIATE``, so the
    UPDATE that matched the row produced exactly ``before`` plus or minus
    ``amount``; no SELECT afterwards. (``UPDATE ... RETURNING`` would do as
    well, but SQLite runs RETURNING through an ephemeral table and it
    measured slower, SQLite 3.40.)
    """
    if stored is not None:
        return _replay(stored, kind, account_id, amount, request_id)
    if fault_point is not None:
        fault_point()  # may refuse the change (see the ledger's module doc)
    if kind == "deposit":
        updated = execute(_DEPOSIT, (amount, account_id, MAX_BALANCE - amount)).rowcount
    else:
        updated = execute(_WITHDRAW, (amount, account_id, amount)).rowcount
    if updated != 1 or before is None:  # no row read means no row updated
        raise _refusal(execute, kind, account_id)
    balance = before + amount if kind == "deposit" else before - amount
    execute(_INSERT_LEDGER, (request_id, account_id, kind, amount, balance))
    if idempotent:
        result = _result_json(kind, account_id, amount, balance)
        execute(_INSERT_IDEMPOTENCY, (idempotency_key(account_id, request_id), result))
    return balance


def _result_json(kind: Kind, account_id: int, amount: int, balance: int) -> str:
    """The stored result of a first execution, byte for byte what the schema
    has always held: ``json.dumps({"kind": ..., "account": ..., "amount": ...,
    "balance": ...}, sort_keys=True)`` (ints and the two kinds need no escaping).
    """
    return (
        f'{{"account": {account_id}, "amount": {amount}, "balance": {balance}, "kind": "{kind}"}}'
    )


def _replay(stored: str, kind: Kind, account_id: int, amount: int, request_id: str) -> int:
    """The stored result of an idempotent request, if the repeat really is one."""
    result: dict[str, Any] = json.loads(stored)
    if (result["kind"], result["account"], result["amount"]) != (kind, account_id, amount):
        raise InvalidArgument(f"request id {request_id!r} was already used for another operation")
    return int(result["balance"])


def _refusal(
    execute: Callable[[str, tuple[object, ...]], sqlite3.Cursor], kind: Kind, account_id: int
) -> Exception:
    """Why a conditional UPDATE changed nothing (called inside the transaction)."""
    row = execute(_SELECT_BALANCE, (account_id,)).fetchone()
    if row is None:
        return InvalidArgument(f"no account {account_id}")
    if kind == "withdraw":
        return InsufficientFunds("insufficient funds")
    return LimitExceeded(f"balance would exceed {MAX_BALANCE}")
