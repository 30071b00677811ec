"""The fast decoding path: msgspec parses and type-checks a body in C, or declines.

``transports.wire.decode`` asks it first and decides by the strict path
whatever it declines.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from transports.wire import checks
from transports.wire.checks import _KNOWN_CODES, _KNOWN_OPS
from transports.wire.messages import ERROR_MESSAGE_MAX, MAX_ATTEMPT, Reply, Request

# Assigned, not imported by name, as hot functions below call their methods:
# CPython 3.11 compiles ``name.method(...)`` on a from-imported name as an
# attribute load (it expects a module there), which binds a new method object
# on every call.
_ID_RE: Final = checks._ID_RE

# Why its answer can stand. msgspec refuses what our protocol refuses
# (invalid UTF-8, NaN and Infinity, overflowing numbers, lone surrogates,
# trailing data, unknown or missing fields, a bool or float as attempt) but
# two things: it resolves a duplicate key as json does (the last wins), and it
# has no depth limit. So its result stands only when the body is plain
# (``_plain_body``: depth and surrogates), every ":" of the body is a member it
# kept (no duplicates, see ``_no_duplicate_keys``) and the fields pass the
# checks the strict path's ``_build`` makes. Anything else goes down the
# strict path, which decides and reports. The fast path returns nothing the
# strict path would not (tests/unit/test_wire.py compares them on generated
# and hostile bodies); with it a request's decode costs ~28k instructions
# instead of ~46k (callgrind).


class _RequestBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    op: str
    args: dict[str, Any]
    attempt: int


class _ErrorBody(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    message: str


class _ReplyBody(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    attempt: int
    status: str
    result: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    error: _ErrorBody | msgspec.UnsetType = msgspec.UNSET


_FAST_REQUEST: Final = msgspec.json.Decoder(_RequestBody).decode
_FAST_REPLY: Final = msgspec.json.Decoder(_ReplyBody).decode
# What msgspec raises for a body it refuses (ValueError: bad UTF-8 in a string).
_FAST_REFUSALS: Final = (msgspec.MsgspecError, ValueError, RecursionError)


def _no_duplicate_keys(body: bytes, members: int) -> bool:
    """True if the decoded objects kept ``members`` members and ``body`` has no more.

    Outside strings, JSON uses ":" only between a key and its value, so the
    body holds at most ``body.count(b":")`` members; decoding keeps one per
    distinct key. If the members kept reach that count, none was dropped as a
    duplicate. (A colon inside a string, or members of deeper objects, make
    the count larger: not proven, and the strict path decides.)
    """
    return body.count(b":") == members


def _fast_fields_ok(msg_id: str, attempt: int) -> bool:
    return _ID_RE.fullmatch(msg_id) is not None and 1 <= attempt <= MAX_ATTEMPT


def _fast_request(body: bytes) -> Request | None:
    """The request in plain ``body`` if the fast path can vouch for it, else None."""
    try:
        req = _FAST_REQUEST(body)
    except _FAST_REFUSALS:
        return None
    if (
        not _no_duplicate_keys(body, 4 + len(req.args))
        or req.op not in _KNOWN_OPS  # names that passed _check_op before
        or not _fast_fields_ok(req.id, req.attempt)
    ):
        return None
    return Request(req.id, req.op, req.args, req.attempt)


def _fast_reply(body: bytes) -> Reply | None:
    """The reply in plain ``body`` if the fast path can vouch for it, else None."""
    try:
        rep = _FAST_REPLY(body)
    except _FAST_REFUSALS:
        return None
    result, error = rep.result, rep.error
    if not _fast_fields_ok(rep.id, rep.attempt):
        return None
    if rep.status == "ok":
        if (
            isinstance(result, dict)
            and error is msgspec.UNSET
            and _no_duplicate_keys(body, 4 + len(result))
        ):
            return Reply.ok(rep.id, rep.attempt, result)
        return None
    if (
        rep.status == "error"
        and isinstance(error, _ErrorBody)
        and result is msgspec.UNSET
        and _no_duplicate_keys(body, 4 + 2)
        and error.code in _KNOWN_CODES  # codes that passed _check_error_code before
        and len(error.message) <= ERROR_MESSAGE_MAX
    ):
        return Reply.error(rep.id, rep.attempt, error.code, error.message)
    return None
