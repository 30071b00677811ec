"""The lab's number checker: is ``n`` prime, is it a palindrome?

Operation ``numbers.check`` takes ``{"n": str}`` and returns
``{"n": canonical, "prime": bool, "palindrome": bool, "digits": int}``.

Input rules:

* ``n`` is a decimal integer string: optional ``+`` or ``-``, then ASCII
  digits ``0-9`` only; surrounding ASCII whitespace (``SPACES``: space, tab,
  LF, VT, FF, CR) is stripped, nothing else is allowed (no other Unicode space
  such as U+00A0, no inner spaces, underscores, ``1.5``, ``1e5``, or non-ASCII
  digits such as Arabic-Indic ones, all of which Python's ``int()`` would
  accept). A JSON integer (not a boolean) is also accepted and treated as
  ``str(n)``. ``args`` holds ``n`` and nothing else.
* At most ``MAX_DIGITS`` significant digits (leading zeros do not count);
  larger inputs are refused, which bounds the primality test's cost.

Result rules:

* ``n`` is the canonical form: no ``+``, no leading zeros, ``-0`` -> ``0``.
  ``digits`` counts its digits, sign excluded.
* ``prime`` follows ``services.primes.is_probable_prime``: negatives, 0 and 1
  are not prime; exact below ~3.3e24, Baillie-PSW above.
* ``palindrome`` compares the canonical string with its reverse, as the lab
  did: negatives never are ("-121" reversed is "121-"), 0..9 always are, and
  leading zeros go first ("0110" is 110, not a palindrome).

``seed_reply`` reproduces the lab server's plain-text reply, spelling
("Palidrome") included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from services.errors import InvalidArgument, UnknownOperation, only_argument
from services.primes import MAX_DIGITS, check_digits, is_probable_prime
from transports.service import CallContext, JsonObject

OP_CHECK = "numbers.check"

# [0-9], not \d: \d matches every Unicode decimal digit.
_INTEGER_RE = re.compile(r"([+-]?)([0-9]+)")
_ECHO_CHARS = 40  # how much of a bad input an error message quotes
#: The whitespace ignored around ``n``: ASCII only, so that the rule is the same
#: in every language (Python's ``str.strip()`` would also take U+00A0, U+2003 ...).
SPACES = " \t\n\v\f\r"

#: Numbers with more digits than this are tested off the event loop in a
#: server (``NumbersService``): a 64-digit prime takes ~0.6 ms, 100 digits
#: ~1.2 ms, 400 digits ~30 ms; a shorter one is cheaper than the hand-off.
OFFLOAD_DIGITS = 64
_LONG = 10**OFFLOAD_DIGITS  # the smallest number of more than OFFLOAD_DIGITS digits


def _echo(raw: str) -> str:
    """A bounded repr of bad input for error messages."""
    if len(raw) <= _ECHO_CHARS:
        return repr(raw)
    return repr(raw[:_ECHO_CHARS]) + f"... ({len(raw)} characters)"


def parse_integer(value: object) -> tuple[int, str]:
    """Validate ``value`` per the module rules; return ``(int, canonical string)``.

    Raises ``InvalidArgument`` with a message naming the problem.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidArgument(
            f"argument 'n' must be a decimal integer string, got {type(value).__name__}"
        )
    if isinstance(value, int):
        try:
            check_digits(value)
        except ValueError:
            raise InvalidArgument(
                f"argument 'n' has more than {MAX_DIGITS} digits; the maximum is {MAX_DIGITS}"
            ) from None
        return value, str(value)
    raw = value.strip(SPACES)
    if not raw:
        raise InvalidArgument("argument 'n' is empty")
    match = _INTEGER_RE.fullmatch(raw)
    if match is None:
        raise InvalidArgument(
            "argument 'n' must be a decimal integer (optional sign, ASCII digits 0-9), "
            f"got {_echo(value)}"
        )
    sign, digits = match.groups()
    # Count before int(): it bounds the work and keeps clear of Python's
    # int/str conversion limit (4300 digits by default).
    digits = digits.lstrip("0") or "0"
    if len(digits) > MAX_DIGITS:
        raise InvalidArgument(f"argument 'n' has {len(digits)} digits; the maximum is {MAX_DIGITS}")
    number = int(digits)
    if sign == "-" and number:
        return -number, "-" + digits
    return number, digits


def check(value: object, long_prime_test: Callable[[int], bool] | None = None) -> JsonObject:
    """The ``numbers.check`` result for a raw ``n`` argument.

    ``long_prime_test`` tests numbers of more than ``OFFLOAD_DIGITS`` digits
    in its stead (``PrimeProcesses.is_prime``: in another process).
    """
    number, canonical = parse_integer(value)
    digits = len(canonical.lstrip("-"))
    test = long_prime_test if long_prime_test and digits > OFFLOAD_DIGITS else is_probable_prime
    return {
        "n": canonical,
        "prime": test(number),
        "palindrome": canonical == canonical[::-1],
        "digits": digits,
    }


def seed_reply(raw: str) -> str:
    """The lab server's exact reply line for the input ``raw``."""
    try:
        result = check(raw)
    except InvalidArgument as exc:
        return f"[Error] {exc.message}"
    return f"[Prime] {result['prime']} [Palidrome] {result['palindrome']}"


class NumbersService:
    """Prime and palindrome checks.

    Up to ``OFFLOAD_DIGITS`` digits a check takes at most ~0.6 ms and runs
    where it is called. A longer prime takes up to ~30 ms (400 digits), so
    with ``long_prime_test`` (a server's ``PrimeProcesses.is_prime``) such a
    check ``blocks``: the server runs it in a worker thread, which waits for
    the test in another process. Without it (the simulator, tests) every
    check runs where it is called.
    """

    name = "numbers"

    def __init__(self, long_prime_test: Callable[[int], bool] | None = None) -> None:
        self._long_prime_test = long_prime_test
        self.blocking_ops = frozenset({OP_CHECK} if long_prime_test else ())

    def blocks(self, op: str, args: Mapping[str, Any]) -> bool:
        # A cheap over-estimate from the raw argument; ``check`` counts the
        # digits exactly (leading zeros and a sign do not count).
        n = args.get("n")
        long = isinstance(n, str) and len(n) > OFFLOAD_DIGITS
        long = long or (type(n) is int and not -_LONG < n < _LONG)
        return long and op in self.blocking_ops

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        if op != OP_CHECK:
            raise UnknownOperation(f"unknown operation {op!r} for service {self.name!r}")
        return check(only_argument(args, "n"), self._long_prime_test)
