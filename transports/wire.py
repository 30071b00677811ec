"""Wire envelope of the testbed protocol: pure encode/decode, no I/O.

One message is one UDP datagram or one TCP frame payload (see
``transports.framing`` for the TCP framing and ``transports/PROTOCOL.md`` for
the normative description)::

    offset size field
    0      2    magic b"RT"
    2      1    version = 1
    3      1    kind: b"Q" request, b"R" reply
    4      4    CRC-32 (zlib.crc32, big-endian) over bytes 0..3, then the body
    8      n    body: UTF-8 JSON object

Like h11, this module only turns bytes into objects and back; endpoints own
the sockets. Both directions validate every field, so an invalid message is
never produced and never accepted; every failure is a ``WireError`` with a
stable ``code``.
"""

from __future__ import annotations

import enum
import json
import json.encoder
import math
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import msgspec

__all__ = [
    "ERROR_CODE_MAX",
    "ERROR_MESSAGE_MAX",
    "HEADER_SIZE",
    "ID_MAX",
    "KIND_REPLY",
    "KIND_REQUEST",
    "MAGIC",
    "MAX_ATTEMPT",
    "MAX_DEPTH",
    "MAX_MESSAGE_SIZE",
    "OP_MAX",
    "PROTOCOL_VERSION",
    "WIRE_ERROR_CODES",
    "Reply",
    "Request",
    "Status",
    "WireError",
    "decode_message",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]

PROTOCOL_VERSION: Final = 1
MAGIC: Final = b"RT"
KIND_REQUEST: Final = b"Q"
KIND_REPLY: Final = b"R"
HEADER_SIZE: Final = 8
#: Whole encoded message, header included; fits a UDP datagram on loopback.
MAX_MESSAGE_SIZE: Final = 16384

ID_MAX: Final = 64
OP_MAX: Final = 64
MAX_ATTEMPT: Final = 1_000_000
ERROR_CODE_MAX: Final = 64
ERROR_MESSAGE_MAX: Final = 512
#: Nesting limit for args/result (the object itself is depth 1). Keeps both
#: directions far from the interpreter's recursion limit, symmetrically.
MAX_DEPTH: Final = 32

TOO_LARGE: Final = "TOO_LARGE"
BAD_MAGIC: Final = "BAD_MAGIC"
UNSUPPORTED_VERSION: Final = "UNSUPPORTED_VERSION"
BAD_CHECKSUM: Final = "BAD_CHECKSUM"
MALFORMED: Final = "MALFORMED"
WIRE_ERROR_CODES: Final = frozenset(
    {TOO_LARGE, BAD_MAGIC, UNSUPPORTED_VERSION, BAD_CHECKSUM, MALFORMED}
)

# fullmatch() everywhere: "$" would accept a trailing newline.
_ID_RE: Final = re.compile(r"[\x21-\x7e]{1,64}")
_OP_RE: Final = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_CODE_RE: Final = re.compile(r"[A-Z][A-Z0-9_]*")

_PREFIX: Final = MAGIC + bytes([PROTOCOL_VERSION])
_CRC: Final = struct.Struct(">I")
_REQUEST_KEYS: Final = frozenset({"id", "op", "args", "attempt"})
_OK_KEYS: Final = frozenset({"id", "attempt", "status", "result"})
_ERROR_KEYS: Final = frozenset({"id", "attempt", "status", "error"})
_ERROR_OBJECT_KEYS: Final = frozenset({"code", "message"})


class Status(enum.Enum):
    """Outcome carried by a reply."""

    OK = "ok"
    ERROR = "error"


# Request and Reply are frozen, but build themselves by writing their __dict__:
# the generated frozen __init__ costs a call per field, and both are built
# several times per round trip. Assignment after construction still raises.


@dataclass(frozen=True, init=False)
class Request:
    """One try of a logical operation; every retry reuses ``id``, bumps ``attempt``."""

    id: str
    op: str
    args: dict[str, Any]
    attempt: int = 1

    def __init__(self, id: str, op: str, args: dict[str, Any], attempt: int = 1) -> None:
        fields = self.__dict__
        fields["id"], fields["op"], fields["args"], fields["attempt"] = id, op, args, attempt


@dataclass(frozen=True, init=False)
class Reply:
    """Answer to the request with the same ``id``; ``attempt`` echoes the try answered.

    Exactly one of ``result`` (status OK) or ``error_code``/``error_message``
    (status ERROR) is set; the codec enforces it.
    """

    id: str
    attempt: int
    status: Status
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None

    def __init__(
        self,
        id: str,
        attempt: int,
        status: Status,
        result: dict[str, Any] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        fields = self.__dict__
        fields["id"], fields["attempt"], fields["status"] = id, attempt, status
        fields["result"], fields["error_code"], fields["error_message"] = (
            result,
            error_code,
            error_message,
        )

    @classmethod
    def ok(cls, id: str, attempt: int, result: dict[str, Any]) -> Reply:
        """A successful reply carrying ``result``."""
        return cls(id, attempt, Status.OK, result)

    @classmethod
    def error(cls, id: str, attempt: int, code: str, message: str) -> Reply:
        """An error reply with a stable ``code`` and a human-readable ``message``."""
        return cls(
            id=id, attempt=attempt, status=Status.ERROR, error_code=code, error_message=message
        )


class WireError(Exception):
    """A message could not be encoded or decoded.

    ``code`` is one of ``WIRE_ERROR_CODES``. On decoding, ``request_id`` and
    ``attempt`` are filled in when the checksum was valid and the body parsed
    far enough to show a valid id (and attempt), so a server can answer with an
    error reply; ``answerable`` says whether it may.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        attempt: int = 1,
        checksum_verified: bool = False,
        is_request: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.attempt = attempt
        #: The CRC matched, so the fields read from the body can be trusted.
        self.checksum_verified = checksum_verified
        #: The message was a request (kind Q) as opposed to a reply.
        self.is_request = is_request

    @property
    def answerable(self) -> bool:
        """True when a server may send an error reply for this message.

        Needs a verified checksum (a corrupted message is never trusted, not
        even its id), a known id, and a request: answering a reply could make
        two peers bounce errors at each other forever.
        """
        return self.checksum_verified and self.is_request and self.request_id is not None


def _fail(code: str, message: str) -> NoReturn:
    raise WireError(code, message)


# --------------------------------------------------------------------------
# Field validation, shared by both directions so they can never disagree.


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
# Encoding


def _json_encoder() -> Callable[[dict[str, Any]], str]:
    """The body encoder: sorted keys, compact separators, UTF-8 text, no NaN.

    ``json.dumps`` with these options builds a new encoder on every call; the
    C encoder behind it is built once here instead (a third of the cost of a
    small message). It is checked against ``json.dumps`` at import, and the
    portable path is used if this interpreter lacks it or disagrees.
    """
    options: dict[str, Any] = {
        "ensure_ascii": False,
        "allow_nan": False,
        "sort_keys": True,
        "separators": (",", ":"),
    }
    portable = json.JSONEncoder(**options).encode

    def refuse(value: object) -> NoReturn:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    make = getattr(json.encoder, "c_make_encoder", None)
    basestring = getattr(json.encoder, "c_encode_basestring", None)
    if make is None or basestring is None:
        return portable
    try:
        # markers=None: no cycle check; _check_json bounds the depth first.
        scan = make(None, refuse, basestring, None, ":", ",", True, False, False)
    except TypeError:
        return portable

    def fast(body: dict[str, Any]) -> str:
        return "".join(scan(body, 0))

    sample = {"b": [1, 2.5, None, True], "a": {"z": 'Grüße \n"', "y": -3}}
    return fast if fast(sample) == json.dumps(sample, **options) else portable


_ENCODE_JSON: Final = _json_encoder()


_HEAD_CRC: Final = {kind: zlib.crc32(_PREFIX + kind) for kind in (KIND_REQUEST, KIND_REPLY)}
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


def _envelope(kind: bytes, body: bytes, request_id: str, attempt: int) -> bytes:
    if HEADER_SIZE + len(body) > MAX_MESSAGE_SIZE:
        raise WireError(
            TOO_LARGE,
            f"message of {HEADER_SIZE + len(body)} bytes exceeds {MAX_MESSAGE_SIZE}",
            request_id=request_id,
            attempt=attempt,
        )
    return _PREFIX + kind + _CRC.pack(zlib.crc32(body, _HEAD_CRC[kind])) + body


_HEAD: Final = {kind: _PREFIX + kind for kind in (KIND_REQUEST, KIND_REPLY)}


# The envelope's keys are fixed, so its JSON is written from a template, keys in
# the order sort_keys gives; only args and result go through the encoder, and
# strings through the encoder's own escaping function. The bytes are exactly
# those of the general encoding of the body dict (tests/unit/test_wire.py checks
# it), for ~8k fewer instructions per message (callgrind: ~17% of an encode)
# than building and sorting the envelope dict.
_QUOTE: Final[Callable[[str], str]] = getattr(
    json.encoder, "c_encode_basestring", json.encoder.py_encode_basestring
)


def _request_body(req_id: str, op: str, args: dict[str, Any], attempt: int) -> bytes:
    args_json = _ENCODE_JSON(args)
    return f'{{"args":{args_json},"attempt":{attempt},"id":{_QUOTE(req_id)},"op":"{op}"}}'.encode()


def _ok_body(rep_id: str, attempt: int, result: dict[str, Any]) -> bytes:
    result_json = _ENCODE_JSON(result)
    head = f'{{"attempt":{attempt},"id":{_QUOTE(rep_id)}'
    return f'{head},"result":{result_json},"status":"ok"}}'.encode()


def _error_body(rep_id: str, attempt: int, code: str, message: str) -> bytes:
    error = f'{{"code":"{code}","message":{_QUOTE(message)}}}'
    return (
        f'{{"attempt":{attempt},"error":{error},"id":{_QUOTE(rep_id)},"status":"error"}}'.encode()
    )


def encode_request(req: Request) -> bytes:
    """Validate ``req`` and return its wire bytes; raise ``WireError`` if invalid."""
    req_id, op, args = _check_id(req.id), _check_op(req.op), _check_object(req.args, "args")
    attempt = _check_attempt(req.attempt)
    try:
        body = _request_body(req_id, op, args, attempt)
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        # Belt and braces: validation should already have caught these.
        raise WireError(MALFORMED, f"cannot encode body: {exc}") from exc
    return _envelope(KIND_REQUEST, body, req_id, attempt)


def encode_reply(rep: Reply) -> bytes:
    """Validate ``rep`` and return its wire bytes; ``TOO_LARGE`` if over the limit."""
    rep_id, attempt = _check_id(rep.id), _check_attempt(rep.attempt)
    try:
        if rep.status is Status.OK:
            if rep.error_code is not None or rep.error_message is not None:
                _fail(MALFORMED, "an ok reply carries no error")
            body = _ok_body(rep_id, attempt, _check_object(rep.result, "result"))
        elif rep.status is Status.ERROR:
            if rep.result is not None:
                _fail(MALFORMED, "an error reply carries no result")
            code = _check_error_code(rep.error_code)
            body = _error_body(rep_id, attempt, code, _check_error_message(rep.error_message))
        else:
            _fail(MALFORMED, "status must be a Status")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError) as exc:
        raise WireError(MALFORMED, f"cannot encode body: {exc}") from exc
    return _envelope(KIND_REPLY, body, rep_id, attempt)


# --------------------------------------------------------------------------
# Decoding


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
# A decoded string can hold a lone surrogate only if the body spells one as a
# \u escape (raw UTF-8 cannot encode one). This finds every such escape, and
# maybe more (an escaped backslash before "ud8.."), which only costs time.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


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


# --------------------------------------------------------------------------
# Decoding, the fast path: msgspec parses and type-checks the envelope in C
#
# It refuses what our protocol refuses (invalid UTF-8, NaN and Infinity,
# overflowing numbers, lone surrogates, trailing data, unknown or missing
# fields, a bool or float as attempt) but two things: it resolves a duplicate
# key as json does (the last wins), and it has no depth limit. So its result
# stands only when the body is plain (``_plain_body``: depth and surrogates),
# every ":" of the body is a member it kept (no duplicates, see
# ``_no_duplicate_keys``) and the fields pass the checks ``_build`` makes.
# Anything else goes down the strict path, which decides and reports. The
# fast path returns nothing the strict path would not (tests/unit/test_wire.py
# compares them on generated and hostile bodies); with it a request's decode
# costs ~28k instructions instead of ~46k (callgrind).


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
