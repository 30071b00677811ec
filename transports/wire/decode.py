"""Decoding: the header checks, then the strict stdlib decoder that every body can fall back on."""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable
from typing import Any, Final, NoReturn

from transports.wire import checks, messages
from transports.wire.checks import (
    _check_attempt,
    _check_error_code,
    _check_error_message,
    _check_id,
    _check_object,
    _check_op,
    _plain_body,
)
from transports.wire.fast import _fast_reply, _fast_request
from transports.wire.messages import (
    BAD_CHECKSUM,
    BAD_MAGIC,
    HEADER_SIZE,
    KIND_REPLY,
    KIND_REQUEST,
    MAGIC,
    MALFORMED,
    MAX_ATTEMPT,
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    TOO_LARGE,
    UNSUPPORTED_VERSION,
    Reply,
    Request,
    WireError,
    _fail,
)

# Assigned, not imported by name, as hot functions below call their methods:
# CPython 3.11 compiles ``name.method(...)`` on a from-imported name as an
# attribute load (it expects a module there), which binds a new method object
# on every call.
_CRC: Final = messages._CRC
_HEAD_CRC: Final = messages._HEAD_CRC
_ID_RE: Final = checks._ID_RE

_REQUEST_KEYS: Final = frozenset({"id", "op", "args", "attempt"})
_OK_KEYS: Final = frozenset({"id", "attempt", "status", "result"})
_ERROR_KEYS: Final = frozenset({"id", "attempt", "status", "error"})
_ERROR_OBJECT_KEYS: Final = frozenset({"code", "message"})
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in object")
    return obj


class _NonFiniteNumber(ValueError):
    """A number literal too large for a float (``1e999``): JSON has no Infinity."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFiniteNumber(text)
    return value


# Strict: refuses duplicate keys, NaN/Infinity and numbers that overflow a float,
# so a decoded value holds only finite floats. ``_LENIENT`` accepts the last
# kind, and runs only to recover the id of a message refused for one.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_reject_constant, parse_float=_finite_float
)
# The C scanner behind _DECODER.decode (not in the type stubs).
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = _DECODER.scan_once  # type: ignore[attr-defined]
_LENIENT: Final = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_constant=_reject_constant
)


def _json_value(text: str) -> Any:
    """``_DECODER.decode(text)`` without its two Python-level wrappers.

    The same steps: skip whitespace, scan one value, skip whitespace, and
    refuse anything after it (the whitespace scans are skipped when the value
    starts the text and ends it, as in every body our encoder writes).
    """
    start = 0 if text[:1] == "{" else _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    try:
        obj, end = _SCAN(text, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return obj


def _known(obj: dict[str, Any]) -> tuple[str | None, int]:
    """The id and attempt of a body, if valid, without raising."""
    req_id, attempt = obj.get("id"), obj.get("attempt")
    known_id = req_id if isinstance(req_id, str) and _ID_RE.fullmatch(req_id) else None
    if type(attempt) is not int or not 1 <= attempt <= MAX_ATTEMPT:
        attempt = 1
    return known_id, attempt


def _build(kind: bytes, obj: dict[str, Any], plain: bool) -> Request | Reply:
    if kind == KIND_REQUEST:
        keys = _REQUEST_KEYS
    elif obj.get("status") == "ok":
        keys = _OK_KEYS
    elif obj.get("status") == "error":
        keys = _ERROR_KEYS
    else:
        _fail(MALFORMED, "status must be 'ok' or 'error'")
    if obj.keys() != keys:
        extra, missing = sorted(obj.keys() - keys), sorted(keys - obj.keys())
        _fail(MALFORMED, f"fields: unexpected {extra}, missing {missing}")
    req_id = _check_id(obj["id"])
    attempt = _check_attempt(obj["attempt"])
    if kind == KIND_REQUEST:
        op = _check_op(obj["op"])
        args = obj["args"]
        if not plain or type(args) is not dict:
            args = _check_object(args, "args")
        return Request(id=req_id, op=op, args=args, attempt=attempt)
    if keys is _OK_KEYS:
        result = obj["result"]
        if not plain or type(result) is not dict:
            result = _check_object(result, "result")
        return Reply.ok(req_id, attempt, result)
    error = obj["error"]
    if not isinstance(error, dict) or error.keys() != _ERROR_OBJECT_KEYS:
        _fail(MALFORMED, "error must be an object with exactly code and message")
    return Reply.error(
        req_id,
        attempt,
        _check_error_code(error["code"]),
        _check_error_message(error["message"]),
    )


def _parse_body(kind: bytes, body: bytes) -> Request | Reply:
    # msgspec has no depth limit: only a plain body may take the fast path.
    if _plain_body(body):
        fast = _fast_request(body) if kind == KIND_REQUEST else _fast_reply(body)
        if fast is not None:
            return fast
    return _parse_strict(kind, body)


def _parse_strict(kind: bytes, body: bytes) -> Request | Reply:
    """The reference decoder: every rule checked in Python, every error reported."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(MALFORMED, f"body is not UTF-8: {exc.reason}") from exc
    plain = True
    try:
        try:
            obj = _json_value(text)
        except _NonFiniteNumber:
            # Parse again to learn the id, so the refusal can be answered; the
            # full walk in _build then reports the number.
            obj, plain = _LENIENT.decode(text), False
    except (ValueError, RecursionError) as exc:
        raise WireError(MALFORMED, f"body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        _fail(MALFORMED, "body must be a JSON object")
    try:
        return _build(kind, obj, plain and _plain_body(body))
    except WireError as exc:
        # The CRC matched, so a valid id can be trusted: with it a server can
        # answer MALFORMED (e.g. an unknown field) instead of leaving the
        # client to retry into silence.
        exc.request_id, exc.attempt = _known(obj)
        raise


def decode_message(data: bytes | bytearray | memoryview) -> Request | Reply:
    """Parse one wire message; raise ``WireError`` on any deviation.

    Checks run cheapest-first, and nothing read from the body is used before
    the CRC matches: size, magic, version, CRC, kind, UTF-8, JSON, fields.
    """
    # Size first: a huge input is refused before any copy or checksum.
    size = data.nbytes if isinstance(data, memoryview) else len(data)
    if size > MAX_MESSAGE_SIZE:
        _fail(TOO_LARGE, f"message of {size} bytes exceeds {MAX_MESSAGE_SIZE}")
    if not isinstance(data, bytes):
        data = bytes(data)
    if data[:2] != MAGIC:
        _fail(BAD_MAGIC, "message does not start with b'RT'")
    if size < HEADER_SIZE:
        _fail(MALFORMED, f"message of {size} bytes is shorter than the header")
    if data[2] != PROTOCOL_VERSION:
        _fail(UNSUPPORTED_VERSION, f"version {data[2]} (this side speaks {PROTOCOL_VERSION})")
    (expected,) = _CRC.unpack_from(data, 4)
    body = data[HEADER_SIZE:]
    head = data[:4]
    if zlib.crc32(body, _HEAD_CRC.get(head[3:]) or zlib.crc32(head)) != expected:
        _fail(BAD_CHECKSUM, "CRC-32 mismatch")
    # Kind is checked after the CRC so that a flipped kind byte is reported
    # as corruption (BAD_CHECKSUM), not as a sender bug.
    kind = data[3:4]
    if kind not in (KIND_REQUEST, KIND_REPLY):
        raise WireError(MALFORMED, f"unknown kind {kind!r}", checksum_verified=True)
    try:
        return _parse_body(kind, body)
    except WireError as exc:
        exc.checksum_verified = True
        exc.is_request = kind == KIND_REQUEST
        raise


def decode_request(data: bytes | bytearray | memoryview) -> Request:
    """Like ``decode_message`` but a reply is an error (``MALFORMED``)."""
    msg = decode_message(data)
    if not isinstance(msg, Request):
        # Not answerable on purpose: never send an error reply to a reply.
        raise WireError(
            MALFORMED, "expected a request, got a reply", request_id=msg.id, attempt=msg.attempt
        )
    return msg


def decode_reply(data: bytes | bytearray | memoryview) -> Reply:
    """Like ``decode_message`` but a request is an error (``MALFORMED``)."""
    msg = decode_message(data)
    if not isinstance(msg, Reply):
        raise WireError(
            MALFORMED,
            "expected a reply, got a request",
            request_id=msg.id,
            attempt=msg.attempt,
        )
    return msg
