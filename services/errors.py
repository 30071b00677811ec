"""Typed errors of the services.

Every error a service raises is a subclass of ``transports.service.ServiceError``
with a stable ``code``; the server endpoint maps it to a wire error reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transports.service import ServiceError

__all__ = [
    "AccountLocked",
    "AuthFailed",
    "InsufficientFunds",
    "InvalidArgument",
    "LimitExceeded",
    "ServiceError",
    "TransactionFailed",
    "Unauthenticated",
    "UnknownOperation",
    "only_argument",
]


class InvalidArgument(ServiceError):
    """An argument is missing, of the wrong type or out of range."""

    code = "INVALID_ARGUMENT"


class UnknownOperation(ServiceError):
    """The service has no operation of that name."""

    code = "UNKNOWN_OPERATION"


class AuthFailed(ServiceError):
    """Login refused. Same code and message for unknown account and wrong PIN."""

    code = "AUTH_FAILED"


class AccountLocked(AuthFailed):
    """Login refused: too many failed logins for this account id, known or not.

    The message says for how long. Unknown account ids lock by the same rules,
    so this reveals nothing about which accounts exist.
    """

    code = "ACCOUNT_LOCKED"


class Unauthenticated(ServiceError):
    """The session token is missing, unknown or expired."""

    code = "UNAUTHENTICATED"


class InsufficientFunds(ServiceError):
    """A withdrawal larger than the balance; nothing was applied."""

    code = "INSUFFICIENT_FUNDS"


class LimitExceeded(ServiceError):
    """A balance would leave its documented range; nothing was applied."""

    code = "LIMIT_EXCEEDED"


class TransactionFailed(ServiceError):
    """The seed's random server-side failure: nothing was applied, try again."""

    code = "TRANSACTION_FAILED"


def only_argument(args: object, name: str) -> Any:
    """The value of ``args[name]`` when ``args`` is an object holding that key and no other.

    An extra key is refused like a missing one: a misspelt or unsupported
    argument must not be silently ignored (transports/PROTOCOL.md, section 7).
    """
    if not isinstance(args, Mapping):
        raise InvalidArgument("arguments must be an object")
    if name not in args:
        raise InvalidArgument(f"missing argument {name!r}")
    if len(args) != 1:
        extra = sorted(str(key) for key in args if key != name)
        raise InvalidArgument(f"unexpected argument(s): {', '.join(extra)}")
    return args[name]
