"""Field validation, shared by the encoder and both decoders so they can never disagree."""

from __future__ import annotations

import math
import re
from typing import Any, Final

from transports.wire.messages import (
    ERROR_CODE_MAX,
    ERROR_MESSAGE_MAX,
    ID_MAX,
    MALFORMED,
    MAX_ATTEMPT,
    MAX_DEPTH,
    OP_MAX,
    _fail,
)

# fullmatch() everywhere: "$" would accept a trailing newline.
_ID_RE: Final = re.compile(r"[\x21-\x7e]{1,64}")
_OP_RE: Final = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_CODE_RE: Final = re.compile(r"[A-Z][A-Z0-9_]*")


# The id a server decodes is the very string object its reply carries back:
# the last one that passed (strings are immutable) is recognised by identity.
_last_id: list[str] = [""]


def _check_id(value: object) -> str:
    if value is _last_id[0] and value:
        return value
    if not isinstance(value, str) or _ID_RE.fullmatch(value) is None:
        _fail(MALFORMED, f"id must be 1..{ID_MAX} printable ASCII characters without spaces")
    if type(value) is str:
        _last_id[0] = value
    return value


def _check_attempt(value: object) -> int:
    # bool is an int subclass; True must not pass as attempt 1.
    if type(value) is not int or not 1 <= value <= MAX_ATTEMPT:
        _fail(MALFORMED, f"attempt must be an integer in 1..{MAX_ATTEMPT}")
    return value


# Operation names and error codes repeat on every message: the ones that passed
# their regex are remembered (exact ``str`` only, bounded), so the common case
# is one set lookup. A value is only ever added after it passed the full check.
_KNOWN_OPS: Final[set[str]] = set()
_KNOWN_CODES: Final[set[str]] = set()
_KNOWN_MAX: Final = 1024


def _remember(known: set[str], value: str) -> None:
    if type(value) is str and len(known) < _KNOWN_MAX:
        known.add(value)


def _check_op(value: object) -> str:
    if type(value) is str and value in _KNOWN_OPS:
        return value
    if not isinstance(value, str) or len(value) > OP_MAX or _OP_RE.fullmatch(value) is None:
        _fail(MALFORMED, f"op must be 1..{OP_MAX} characters like 'bank.deposit'")
    _remember(_KNOWN_OPS, value)
    return value


def _check_error_code(value: object) -> str:
    if type(value) is str and value in _KNOWN_CODES:
        return value
    if (
        not isinstance(value, str)
        or len(value) > ERROR_CODE_MAX
        or _CODE_RE.fullmatch(value) is None
    ):
        _fail(MALFORMED, f"error code must match [A-Z][A-Z0-9_]* and be <= {ERROR_CODE_MAX}")
    _remember(_KNOWN_CODES, value)
    return value


def _check_text(value: str, what: str) -> None:
    # A lone surrogate ("\ud800" is legal JSON) cannot be written as UTF-8;
    # rejecting it on decode keeps every accepted message re-encodable.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            _fail(MALFORMED, f"{what} contains a lone surrogate")


def _check_error_message(value: object) -> str:
    if not isinstance(value, str) or len(value) > ERROR_MESSAGE_MAX:
        _fail(MALFORMED, f"error message must be a string of <= {ERROR_MESSAGE_MAX} characters")
    _check_text(value, "error message")
    return value


def _check_json(value: object, depth: int) -> None:
    """Accept exactly the values that survive a JSON round trip unchanged."""
    # Exact types first (one identity test each): what the codec and the
    # services produce. Subclasses and everything else take the general path.
    kind = type(value)
    if kind is str:
        if not value.isascii():  # type: ignore[attr-defined]
            _check_text(value, "string")  # type: ignore[arg-type]
        return
    if kind is int or kind is bool or value is None:
        return
    if kind is dict or kind is list:
        if depth > MAX_DEPTH:
            _fail(MALFORMED, f"nesting deeper than {MAX_DEPTH}")
        if kind is dict:
            for key, item in value.items():  # type: ignore[attr-defined]
                if type(key) is not str:
                    # json.dumps would silently turn 1 into "1": no round trip.
                    if not isinstance(key, str):
                        _fail(MALFORMED, "object keys must be strings")
                    _check_text(key, "key")
                elif not key.isascii():
                    _check_text(key, "key")
                item_kind = type(item)
                if item_kind is str:  # the common leaves, without a call
                    if not item.isascii():
                        _check_text(item, "string")
                elif item_kind is not int and item_kind is not bool and item is not None:
                    _check_json(item, depth + 1)
        else:
            for item in value:  # type: ignore[attr-defined]
                _check_json(item, depth + 1)
        return
    if isinstance(value, bool | int):
        return
    if isinstance(value, str):
        _check_text(value, "string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            _fail(MALFORMED, "NaN and Infinity are not JSON")
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            _fail(MALFORMED, f"nesting deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    _fail(MALFORMED, "object keys must be strings")
                _check_text(key, "key")
                _check_json(item, depth + 1)
        else:
            for item in value:
                _check_json(item, depth + 1)
    else:
        # Tuples, sets, bytes, ...: not JSON, or not round-trippable.
        _fail(MALFORMED, f"{type(value).__name__} is not a JSON value")


def _check_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(MALFORMED, f"{what} must be a JSON object")
    _check_json(value, 1)
    return value


# --------------------------------------------------------------------------
# A whole body at once: when a decoded value may skip the walk of _check_json.

# A decoded string can hold a lone surrogate only if the body spells one as a
# \u escape (raw UTF-8 cannot encode one). This finds every such escape, and
# maybe more (an escaped backslash before "ud8.."), which only costs time.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _plain_body(body: bytes) -> bool:
    """True when no value decoded from ``body`` can fail ``_check_json``.

    After a strict decode the only faults left are nesting deeper than
    ``MAX_DEPTH`` and lone surrogates. At most ``MAX_DEPTH`` brackets (counted
    anywhere, inside strings too) rule out the first, no surrogate escape the
    second; a body that fails either test is walked in full.
    """
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        return False
    return b"\\u" not in body or _SURROGATE_ESCAPE.search(body) is None
