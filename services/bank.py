"""The bank service: the lab's bank server as a ``Service`` over a ``Ledger``.

Role: validate every argument strictly, resolve the session token, and call
the ledger; all state (balances, sessions, audit trail) lives in the ledger.

Operations (``args`` -> result)::

    bank.login    {"account": int, "pin": str}      -> {"token": str, "name": str}
    bank.balance  {"token": str}                    -> {"account": int, "balance": int}
    bank.deposit  {"token": str, "amount": int}     -> {"account": int, "balance": int}
    bank.withdraw {"token": str, "amount": int}     -> {"account": int, "balance": int}
    bank.logout   {"token": str}                    -> {}

Validation: every field is required and must have exactly its JSON type
(``true`` is not an integer); unknown fields are rejected, so a misspelt field
cannot be silently ignored. ``pin`` is 1..32 characters, ``token`` at most
128, ``amount`` in ``1..MAX_AMOUNT`` minor units. Any bad input raises
``InvalidArgument`` before anything is read or changed; a well-formed but
unknown or expired token raises ``Unauthenticated``.

Deposits and withdrawals record ``ctx.request_id`` with the change and pass
``ctx.idempotent`` through (exactly-once when set); ``ctx.wall`` (a wall clock:
the ledger stores these times, and a monotonic clock restarts at boot) drives
session expiry and login lockout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from services.errors import InvalidArgument, UnknownOperation
from services.ledger import MAX_AMOUNT, Ledger
from services.ledger.ledger import show_number
from transports.service import CallContext, JsonObject

MAX_PIN_LEN = 32
MAX_ACCOUNT_ID = 2**63 - 1  # SQLite INTEGER range
MAX_TOKEN_LEN = 128

#: Required fields of each operation and their JSON types.
_FIELDS: dict[str, dict[str, type]] = {
    "bank.login": {"account": int, "pin": str},
    "bank.balance": {"token": str},
    "bank.deposit": {"token": str, "amount": int},
    "bank.withdraw": {"token": str, "amount": int},
    "bank.logout": {"token": str},
}
_TYPE_NAMES = {int: "an integer", str: "a string"}

_Handler = Callable[[Mapping[str, Any], CallContext], JsonObject]


def _check_fields(op: str, args: object) -> Mapping[str, Any]:
    """Exactly the operation's fields, each of its type; returns ``args``."""
    spec = _FIELDS[op]
    # Fast path for what the wire decoder produces (a plain dict of exact
    # types): as many keys as the spec and each spec field of exactly its type
    # means no field is missing or extra and none is a bool. Anything else
    # takes the full checks below, which name the problem.
    if type(args) is dict and len(args) == len(spec):
        for field, kind in spec.items():
            if type(args.get(field)) is not kind:
                break
        else:
            token = args.get("token")
            if token is None or len(token) <= MAX_TOKEN_LEN:
                return args
    return _check_fields_fully(op, spec, args)


def _check_fields_fully(op: str, spec: dict[str, type], args: object) -> Mapping[str, Any]:
    if not isinstance(args, Mapping):
        raise InvalidArgument(f"{op}: arguments must be an object")
    missing = [field for field in spec if field not in args]
    if missing:
        raise InvalidArgument(f"{op}: missing field(s): {', '.join(missing)}")
    extra = sorted(str(field) for field in args if field not in spec)
    if extra:
        raise InvalidArgument(f"{op}: unexpected field(s): {', '.join(extra)}")
    for field, kind in spec.items():
        value = args[field]
        # bool is a subclass of int; JSON true is not a number.
        if isinstance(value, bool) or not isinstance(value, kind):
            raise InvalidArgument(
                f"{op}: {field} must be {_TYPE_NAMES[kind]}, got {type(value).__name__}"
            )
    token = args.get("token")
    if token is not None and len(token) > MAX_TOKEN_LEN:
        raise InvalidArgument(f"{op}: token longer than {MAX_TOKEN_LEN} characters")
    return args


class BankService:
    """Login, balance, deposit, withdraw and logout over a shared ``Ledger``.

    Login hashes the PIN with scrypt (tens of milliseconds): a worker thread's
    job. The other operations are a few SQLite statements, tens of
    microseconds, and run on the event loop; measured on the bank server, a
    thread hand-off per deposit cost more CPU than the deposit (about 550
    against 220 us per request, 2,000 against 4,000+ deposits/s). Unless
    ``ledger_shared``: when other processes write the same ledger file
    (``serve --workers``), any write may wait for their lock, so every
    operation goes to a worker thread. (Another program writing the file of a
    single server would likewise hold its event loop for up to the ledger's
    busy timeout.)
    """

    name: str = "bank"
    #: Screened by the server's admission (rate limits, address validation,
    #: a bounded queue) and run on their own threads: scrypt costs ~50 ms.
    expensive_ops: frozenset[str] = frozenset({"bank.login"})

    def __init__(self, ledger: Ledger, *, ledger_shared: bool = False) -> None:
        self.ledger = ledger
        self.blocking_ops = frozenset(_FIELDS) if ledger_shared else frozenset({"bank.login"})
        self._handlers: dict[str, _Handler] = {
            "bank.login": self._login,
            "bank.balance": self._balance,
            "bank.deposit": self._deposit,
            "bank.withdraw": self._withdraw,
            "bank.logout": self._logout,
        }

    def blocks(self, op: str, args: Mapping[str, Any]) -> bool:
        return op in self.blocking_ops

    def expensive(self, op: str, args: Mapping[str, Any]) -> bool:
        """Whether this call would run scrypt: a login whose arguments are valid.

        Invalid ones are refused before any hashing, so they cost no more
        than a balance check and need no admission.
        """
        if op not in self.expensive_ops:
            return False
        try:
            checked = _check_fields(op, args)
        except InvalidArgument:
            return False
        pin, account = checked["pin"], checked["account"]
        return 1 <= len(pin) <= MAX_PIN_LEN and 1 <= account <= MAX_ACCOUNT_ID

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        """Execute one bank operation (see module doc)."""
        handler = self._handlers.get(op)
        if handler is None:
            raise UnknownOperation(f"bank has no operation {op!r}")
        return handler(_check_fields(op, args), ctx)

    def _login(self, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        pin: str = args["pin"]
        if not 1 <= len(pin) <= MAX_PIN_LEN:
            raise InvalidArgument(f"bank.login: pin must be 1..{MAX_PIN_LEN} characters")
        token, name = self.ledger.login(args["account"], pin, ctx.wall)
        return {"token": token, "name": name}

    def _balance(self, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        account = self.ledger.account_for(args["token"], ctx.wall)
        return {"account": account, "balance": self.ledger.balance(account)}

    def _deposit(self, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        account, balance = self.ledger.deposit_for(
            args["token"], _amount(args), ctx.request_id, ctx.wall, idempotent=ctx.idempotent
        )
        return {"account": account, "balance": balance}

    def _withdraw(self, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        account, balance = self.ledger.withdraw_for(
            args["token"], _amount(args), ctx.request_id, ctx.wall, idempotent=ctx.idempotent
        )
        return {"account": account, "balance": balance}

    def _logout(self, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        self.ledger.logout(args["token"])
        return {}


def _amount(args: Mapping[str, Any]) -> int:
    # Checked here too so a bad amount is reported before the token is looked at.
    amount: int = args["amount"]
    if not 1 <= amount <= MAX_AMOUNT:
        raise InvalidArgument(
            f"amount must be in 1..{MAX_AMOUNT} minor units, got {show_number(amount)}"
        )
    return amount
