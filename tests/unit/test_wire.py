"""Unit and property tests of the wire codec (transports.wire): no sockets."""

from __future__ import annotations

import functools
import json
import random
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import transports.wire as wire
from transports.wire import (
    HEADER_SIZE,
    MAX_DEPTH,
    MAX_MESSAGE_SIZE,
    WIRE_ERROR_CODES,
    Reply,
    Request,
    Status,
    WireError,
    decode_message,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from transports.wire.checks import _plain_body
from transports.wire.decode import _parse_body, _parse_strict
from transports.wire.fast import _fast_reply, _fast_request

PROTOCOL_MD = Path(wire.__file__).parent.with_name("PROTOCOL.md")

DEPOSIT = Request("a1b2c3d4-0007", "bank.deposit", {"token": "tok-5f2e", "amount": 2500}, 2)
DEPOSIT_OK = Reply.ok("a1b2c3d4-0007", 2, {"account": 1001, "balance": 12500})
INSUFFICIENT = Reply.error(
    "a1b2c3d4-0008", 1, "INSUFFICIENT_FUNDS", "balance 12500 is less than 20000"
)


def raw_message(body: bytes | str | dict[str, Any], kind: bytes = b"Q", version: int = 1) -> bytes:
    """A message with a correct CRC around any body, valid or not."""
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    head = b"RT" + bytes([version]) + kind
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def decode_error(data: bytes) -> WireError:
    with pytest.raises(WireError) as info:
        decode_message(data)
    assert info.value.code in WIRE_ERROR_CODES
    return info.value


def request_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "r-1", "op": "bank.deposit", "args": {"amount": 1}, "attempt": 3}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


# --------------------------------------------------------------------------
# Strategies following the field rules

ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
ops = st.from_regex(r"[a-z][a-z0-9_]{0,9}(\.[a-z][a-z0-9_]{0,9}){0,4}", fullmatch=True)
attempts = st.integers(1, wire.MAX_ATTEMPT)
# st.text() never yields lone surrogates, so every string is valid Unicode.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
requests = st.builds(Request, id=ids, op=ops, args=json_objects, attempt=attempts)
error_codes = st.from_regex(r"[A-Z][A-Z0-9_]{0,63}", fullmatch=True)
replies = st.one_of(
    st.builds(Reply.ok, ids, attempts, json_objects),
    st.builds(Reply.error, ids, attempts, error_codes, st.text(max_size=wire.ERROR_MESSAGE_MAX)),
)
messages = st.one_of(requests, replies)


def encode(msg: Request | Reply) -> bytes:
    return encode_request(msg) if isinstance(msg, Request) else encode_reply(msg)


# --------------------------------------------------------------------------
# Round trip and determinism


@settings(max_examples=150)
@given(messages)
def test_round_trip(msg: Request | Reply) -> None:
    data = encode(msg)
    assert len(data) <= MAX_MESSAGE_SIZE
    assert decode_message(data) == msg
    assert data == encode(msg)  # deterministic
    if isinstance(msg, Request):
        assert decode_request(data) == msg
        # Dict insertion order must not leak into the bytes.
        shuffled = Request(msg.id, msg.op, dict(reversed(msg.args.items())), msg.attempt)
        assert encode_request(shuffled) == data
    else:
        assert decode_reply(data) == msg


def general_encoding(msg: Request | Reply) -> bytes:
    """The body as PROTOCOL.md defines it: sorted keys, compact, UTF-8."""
    body: dict[str, Any] = {"id": msg.id, "attempt": msg.attempt}
    if isinstance(msg, Request):
        body.update(op=msg.op, args=msg.args)
    elif msg.status is Status.OK:
        body.update(status="ok", result=msg.result)
    else:
        body.update(status="error", error={"code": msg.error_code, "message": msg.error_message})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


@settings(max_examples=300)
@given(messages)
def test_envelope_templates_write_exactly_the_general_encoding(msg: Request | Reply) -> None:
    assert encode(msg)[wire.HEADER_SIZE :] == general_encoding(msg)


# -- the fast decoding path (msgspec) answers only what the strict path answers

_INNER = object()  # where a tampered body keeps its args, result or error object


def _fast(kind: bytes, body: bytes) -> Request | Reply | None:
    """The fast path's answer, as ``_parse_body`` asks for it (plain bodies only)."""
    if not _plain_body(body):
        return None
    return _fast_request(body) if kind == b"Q" else _fast_reply(body)


def _object_text(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in pairs) + "}"


@st.composite
def tampered_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid message's body with members repeated, added or moved, at both levels.

    Keys come from the envelope, the message's own and a few that hold the
    characters the duplicate check counts; values are any JSON value.
    """
    msg = draw(messages)
    kind = b"Q" if isinstance(msg, Request) else b"R"
    body = json.loads(general_encoding(msg))
    inner_key = next(k for k in ("args", "result", "error") if k in body)
    inner = [(k, json.dumps(v, ensure_ascii=False)) for k, v in body[inner_key].items()]
    top: list[tuple[str, Any]] = [(k, _INNER if k == inner_key else v) for k, v in body.items()]
    for _ in range(draw(st.integers(0, 3))):
        pairs: list[Any] = draw(st.sampled_from([top, inner]))
        keys = [k for k, _ in pairs] + ["id", "attempt", "x", ":", "{"]
        value = draw(json_values)
        item = value if pairs is top else json.dumps(value, ensure_ascii=False)
        pairs.insert(draw(st.integers(0, len(pairs))), (draw(st.sampled_from(keys)), item))
    inner_text = _object_text(inner)
    rendered = [
        (k, inner_text if v is _INNER else json.dumps(v, ensure_ascii=False)) for k, v in top
    ]
    return kind, _object_text(rendered).encode("utf-8")


@settings(max_examples=500)
@given(tampered_bodies())
def test_fast_path_returns_only_what_the_strict_path_returns(case: tuple[bytes, bytes]) -> None:
    kind, body = case
    fast = _fast(kind, body)
    if fast is not None:  # the strict path must accept it too, with the same fields and types
        assert repr(_parse_strict(kind, body)) == repr(fast)


@settings(max_examples=300)
@given(messages)
def test_fast_path_agrees_on_every_valid_message(msg: Request | Reply) -> None:
    data = encode(msg)
    kind, body = data[3:4], data[wire.HEADER_SIZE :]
    fast = _fast(kind, body)
    assert fast is None or (fast == msg and repr(fast) == repr(_parse_strict(kind, body)))


@pytest.mark.parametrize("msg", [DEPOSIT, DEPOSIT_OK, INSUFFICIENT])
def test_everyday_messages_take_the_fast_path(msg: Request | Reply) -> None:
    data = encode(msg)
    assert _fast(data[3:4], data[wire.HEADER_SIZE :]) == msg


@pytest.mark.parametrize(
    "literal",
    [
        "1.00000000000000011102230246251565404236316680908203125",  # a tie: rounds to even
        "2.2250738585072011e-308",
        "4.9e-324",
        "1e-400",
        "-0.0",
        "123456789012345678901234567890",
    ],
)
def test_fast_and_strict_paths_read_numbers_alike(literal: str) -> None:
    body = f'{{"args":{{"n":{literal}}},"attempt":1,"id":"a","op":"bank.deposit"}}'.encode()
    fast = _fast(b"Q", body)
    assert fast is not None and repr(fast) == repr(_parse_strict(b"Q", body))


@pytest.mark.parametrize("levels", [MAX_DEPTH, 5000])
def test_the_depth_limit_holds_on_the_fast_path(levels: int) -> None:
    # Lists hold no ":", so only the depth check keeps these off the fast path.
    encode_request(Request("x", "a.b", {}))  # a known operation, as in a running server
    deep = '{"args":{"k":' + "[" * levels + "]" * levels + '},"attempt":1,"id":"x","op":"a.b"}'
    assert _fast(b"Q", deep.encode()) is None
    assert decode_error(raw_message(deep)).code == "MALFORMED"


def test_what_the_fast_path_refuses_the_strict_path_decides() -> None:
    # msgspec refuses integers this long; the strict path accepts up to
    # Python's 4300-digit limit, so the message still decodes.
    body = b'{"args":{"n":-' + b"9" * 4300 + b'},"attempt":1,"id":"a","op":"bank.deposit"}'
    assert _fast(b"Q", body) is None
    assert _parse_body(b"Q", body) == Request("a", "bank.deposit", {"n": -(10**4300 - 1)})


@pytest.mark.parametrize(
    "args",
    [
        '{"k":{"x":1,"x":2}}',  # a duplicate one level down
        '{"k":[{"x":1,"x":2}]}',  # inside a list
        '{"k":1,"k":"a:b"}',  # a colon in a string makes up for the lost member
        '{"k":{"x":1},"k":"{"}',  # a brace in a string makes up for the lost object
        '{"k":{"x":1},"k":{"y":2}}',
    ],
)
def test_duplicate_keys_anywhere_are_refused(args: str) -> None:
    body = '{"id":"a","op":"a","args":' + args + ',"attempt":1}'
    assert "duplicate key" in decode_error(raw_message(body)).message


def test_known_bytes() -> None:
    data = encode_request(DEPOSIT)
    assert data[:4] == b"RT\x01Q"
    assert data[8:] == (
        b'{"args":{"amount":2500,"token":"tok-5f2e"},"attempt":2,'
        b'"id":"a1b2c3d4-0007","op":"bank.deposit"}'
    )
    assert struct.unpack(">I", data[4:8])[0] == 0x24F94D3D == zlib.crc32(data[:4] + data[8:])
    assert encode_reply(DEPOSIT_OK)[:4] == b"RT\x01R"


def test_non_ascii_is_utf8_not_escaped() -> None:
    data = encode_request(Request("x", "text.convert", {"text": "Grüße ✓ 𝄞"}))
    assert "Grüße ✓ 𝄞".encode() in data
    assert decode_request(data).args == {"text": "Grüße ✓ 𝄞"}


def test_accepts_bytearray_memoryview_and_whitespace() -> None:
    data = encode_request(DEPOSIT)
    assert decode_message(bytearray(data)) == DEPOSIT
    assert decode_message(memoryview(data)) == DEPOSIT
    spaced = raw_message(json.dumps(request_body(), indent=2))
    assert decode_request(spaced) == Request("r-1", "bank.deposit", {"amount": 1}, 3)


def test_max_size_boundary() -> None:
    base = len(encode_request(Request("x", "text.convert", {"t": ""})))
    fits = Request("x", "text.convert", {"t": "a" * (MAX_MESSAGE_SIZE - base)})
    assert len(encode_request(fits)) == MAX_MESSAGE_SIZE
    assert decode_request(encode_request(fits)) == fits
    too_big = Request("x", "text.convert", {"t": "a" * (MAX_MESSAGE_SIZE - base + 1)}, 4)
    with pytest.raises(WireError) as info:
        encode_request(too_big)
    assert (info.value.code, info.value.request_id, info.value.attempt) == ("TOO_LARGE", "x", 4)
    with pytest.raises(WireError, match="TOO_LARGE"):
        encode_reply(Reply.ok("x", 1, {"t": "é" * MAX_MESSAGE_SIZE}))


def test_depth_limit_boundary() -> None:
    def nested(levels: int) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for _ in range(levels - 1):
            obj = {"a": obj}
        return obj

    ok = Request("x", "a.b", nested(MAX_DEPTH))
    assert decode_request(encode_request(ok)) == ok
    with pytest.raises(WireError, match="MALFORMED"):
        encode_request(Request("x", "a.b", nested(MAX_DEPTH + 1)))
    err = decode_error(raw_message(request_body(args=nested(MAX_DEPTH + 1))))
    assert err.code == "MALFORMED" and err.answerable
    # Far deeper than the interpreter's recursion limit: still a clean error.
    deep = '{"id":"x","op":"a","attempt":1,"args":' + "[" * 5000 + "]" * 5000 + "}"
    assert decode_error(raw_message(deep)).code == "MALFORMED"


# --------------------------------------------------------------------------
# Header checks, in order


def test_oversize_rejected_before_any_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: object) -> int:
        raise AssertionError("oversize input was processed")

    valid_header = encode_request(DEPOSIT)[:HEADER_SIZE]
    monkeypatch.setattr(zlib, "crc32", boom)  # the module wire.py uses
    assert decode_error(valid_header + bytes(MAX_MESSAGE_SIZE)).code == "TOO_LARGE"
    huge = memoryview(bytes(256 << 20))  # 256 MiB of zeros, not copied
    start = time.perf_counter()
    assert decode_error(huge).code == "TOO_LARGE"  # type: ignore[arg-type]
    assert time.perf_counter() - start < 0.05


def test_header_errors() -> None:
    good = encode_request(DEPOSIT)
    assert decode_error(b"").code == "BAD_MAGIC"
    assert decode_error(b"XT" + good[2:]).code == "BAD_MAGIC"
    assert decode_error(b"GET / HTTP/1.1\r\n\r\n").code == "BAD_MAGIC"
    assert decode_error(b"RT\x01Q\x00").code == "MALFORMED"  # truncated header
    body = good[HEADER_SIZE:]
    assert decode_error(raw_message(body, version=2)).code == "UNSUPPORTED_VERSION"
    assert decode_error(raw_message(body, version=0)).code == "UNSUPPORTED_VERSION"
    assert decode_error(good[:4] + b"\x00\x00\x00\x00" + body).code == "BAD_CHECKSUM"
    # Unknown kind: MALFORMED when the CRC vouches for it, BAD_CHECKSUM when not.
    assert decode_error(raw_message(body, kind=b"X")).code == "MALFORMED"
    assert decode_error(good[:3] + b"X" + good[4:]).code == "BAD_CHECKSUM"
    assert decode_error(raw_message(b"")).code == "MALFORMED"  # empty body


def test_checksum_covers_header_and_body() -> None:
    good = encode_request(DEPOSIT)
    as_reply = good[:3] + b"R" + good[4:]  # same body, kind flipped
    assert decode_error(as_reply).code == "BAD_CHECKSUM"
    assert decode_error(good + b" ").code == "BAD_CHECKSUM"


# --------------------------------------------------------------------------
# Body checks (each with a correct CRC so only the rule under test fails)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{}",  # invalid UTF-8
        b'{"id":"\xc3"}',  # truncated UTF-8 sequence
        "\ufeff" + json.dumps(request_body()),  # byte order mark
        "not json",
        "[]",
        '"a string"',
        json.dumps(request_body()) + "{}",  # trailing data
        json.dumps(request_body(args={"x": float("nan")})),
        json.dumps(request_body(args={"x": float("inf")})),
        json.dumps(request_body(args={"x": [float("-inf")]})),
        '{"id":"a","id":"b","op":"a","args":{},"attempt":1}',
        '{"id":"a","op":"a","args":{"k":1,"k":1},"attempt":1}',
        '{"id":"a","op":"a","args":{"s":"\\ud800"},"attempt":1}',  # lone surrogate
        '{"id":"a","op":"a","args":{"\\udc00":1},"attempt":1}',
        '{"id":"a","op":"a","args":{"n":' + "9" * 4301 + '},"attempt":1}',
    ],
)
def test_malformed_body(body: bytes | str) -> None:
    assert decode_error(raw_message(body)).code == "MALFORMED"


BAD_REQUEST_FIELDS: list[dict[str, Any]] = [
    {"id": ""},
    {"id": "x" * 65},
    {"id": "has space"},
    {"id": "caf\u00e9"},
    {"id": "tab\there"},
    {"id": "line\n"},
    {"id": 7},
    {"id": None},
    {"op": ""},
    {"op": "Bank.deposit"},
    {"op": "bank..deposit"},
    {"op": "bank."},
    {"op": ".bank"},
    {"op": "1bank"},
    {"op": "bank-deposit"},
    {"op": "bank.deposit\n"},
    {"op": "b" * 65},
    {"op": ["bank.deposit"]},
    {"attempt": 0},
    {"attempt": -1},
    {"attempt": 1_000_001},
    {"attempt": True},
    {"attempt": 1.0},
    {"attempt": "1"},
    {"args": []},
    {"args": None},
    {"args": "amount=1"},
    {"extra": 1},
    {"args": _DROP},
    {"op": _DROP},
    {"attempt": _DROP},
]


@pytest.mark.parametrize("change", BAD_REQUEST_FIELDS)
def test_bad_request_fields_rejected_both_ways(change: dict[str, Any]) -> None:
    body = request_body(**change)
    err = decode_error(raw_message(body))
    assert err.code == "MALFORMED"
    # The id is known exactly when it is itself valid: then a server may answer.
    id_ok = "id" not in change
    assert err.answerable is id_ok
    assert err.request_id == ("r-1" if id_ok else None)
    if id_ok:
        attempt_ok = "attempt" not in change
        assert err.attempt == (3 if attempt_ok else 1)
    if _DROP not in change.values() and "extra" not in change:
        with pytest.raises(WireError) as info:
            encode_request(Request(body["id"], body["op"], body["args"], body["attempt"]))
        assert info.value.code == "MALFORMED"


def reply_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "r-1",
        "attempt": 2,
        "status": "error",
        "error": {"code": "INVALID_ARGUMENT", "message": "bad"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


@pytest.mark.parametrize(
    "change",
    [
        {"status": "maybe"},
        {"status": None},
        {"status": _DROP},
        {"status": "ok"},  # ok with error and no result
        {"result": {}},  # error with result as well
        {"error": None},
        {"error": "INVALID_ARGUMENT"},
        {"error": {"code": "INVALID_ARGUMENT"}},
        {"error": {"code": "INVALID_ARGUMENT", "message": "m", "detail": 1}},
        {"error": {"code": "invalid", "message": "m"}},
        {"error": {"code": "9X", "message": "m"}},
        {"error": {"code": "BAD-CODE", "message": "m"}},
        {"error": {"code": "A" * 65, "message": "m"}},
        {"error": {"code": "", "message": "m"}},
        {"error": {"code": "X", "message": "m" * 513}},
        {"error": {"code": "X", "message": 5}},
        {"attempt": False},
        {"id": ""},
        {"op": "bank.deposit"},
    ],
)
def test_bad_reply_fields(change: dict[str, Any]) -> None:
    err = decode_error(raw_message(reply_body(**change), kind=b"R"))
    assert err.code == "MALFORMED"
    assert not err.answerable  # never answer a reply


def test_bad_ok_reply_fields() -> None:
    ok = {"id": "r-1", "attempt": 1, "status": "ok", "result": {"a": 1}}
    assert decode_reply(raw_message(ok, kind=b"R")) == Reply.ok("r-1", 1, {"a": 1})
    bad_fields: list[dict[str, Any]] = [
        {"result": []},
        {"result": None},
        {"error": {"code": "X", "message": ""}},
    ]
    for bad in bad_fields:
        assert decode_error(raw_message({**ok, **bad}, kind=b"R")).code == "MALFORMED"
    longest = Reply.error("r", 1, "A" * 64, "m" * 512)
    assert decode_reply(encode_reply(longest)) == longest


@pytest.mark.parametrize(
    "args",
    [
        {"t": (1, 2)},  # tuple would come back as a list
        {1: "int key"},  # json.dumps would stringify the key
        {"s": {1, 2}},
        {"b": b"bytes"},
        {"f": float("nan")},
        {"f": float("inf")},
        {"s": "lone \ud800 surrogate"},
        {"\udfff": 1},
        {"n": 10**5000},
        {"o": object()},
    ],
)
def test_encode_rejects_non_round_trippable_args(args: dict[Any, Any]) -> None:
    with pytest.raises(WireError) as info:
        encode_request(Request("x", "a.b", args))
    assert info.value.code == "MALFORMED"


@pytest.mark.parametrize(
    "reply",
    [
        Reply("x", 1, Status.OK, result={}, error_code="X", error_message="m"),
        Reply("x", 1, Status.OK, result=None),
        Reply("x", 1, Status.ERROR, result={}, error_code="X", error_message="m"),
        Reply("x", 1, Status.ERROR, error_code=None, error_message="m"),
        Reply("x", 1, Status.ERROR, error_code="X", error_message=None),
        Reply("x", 1, Status.ERROR, error_code="X", error_message="bad \udc80"),
        Reply("x", 1, "ok", result={}),  # type: ignore[arg-type]
        Reply("x", True, Status.OK, result={}),
        Reply("x y", 1, Status.OK, result={}),
    ],
)
def test_encode_rejects_invalid_replies(reply: Reply) -> None:
    with pytest.raises(WireError) as info:
        encode_reply(reply)
    assert info.value.code == "MALFORMED"


def test_wrong_kind() -> None:
    with pytest.raises(WireError) as info:
        decode_request(encode_reply(DEPOSIT_OK))
    assert info.value.code == "MALFORMED" and not info.value.answerable
    with pytest.raises(WireError) as info:
        decode_reply(encode_request(DEPOSIT))
    assert info.value.code == "MALFORMED" and not info.value.answerable


def test_answerable_needs_valid_checksum_and_id() -> None:
    body = request_body(op="NOT AN OP")
    good = raw_message(body)
    err = decode_error(good)
    assert (err.code, err.request_id, err.attempt, err.answerable) == ("MALFORMED", "r-1", 3, True)
    # The same message with a bad CRC: not even its id may be trusted.
    corrupted = good[:4] + bytes([good[4] ^ 1]) + good[5:]
    err = decode_error(corrupted)
    assert (err.code, err.request_id, err.answerable) == ("BAD_CHECKSUM", None, False)
    assert not WireError("MALFORMED", "x", request_id="r").answerable  # default: unverified


# --------------------------------------------------------------------------
# Corruption


def test_every_single_bit_flip_is_detected() -> None:
    for good in (encode_request(DEPOSIT), encode_reply(DEPOSIT_OK), encode_reply(INSUFFICIENT)):
        for bit in range(len(good) * 8):
            bad = bytearray(good)
            bad[bit // 8] ^= 1 << (bit % 8)
            err = decode_error(bytes(bad))
            assert err.code in {"BAD_MAGIC", "UNSUPPORTED_VERSION", "BAD_CHECKSUM"}
            assert not err.answerable


@settings(max_examples=100)
@given(messages, st.randoms(use_true_random=False), st.integers(1, 8))
def test_random_bit_flips_never_decode(msg: Request | Reply, rnd: random.Random, n: int) -> None:
    good = encode(msg)
    bad = bytearray(good)
    for bit in rnd.sample(range(len(good) * 8), n):
        bad[bit // 8] ^= 1 << (bit % 8)
    err = decode_error(bytes(bad))
    assert err.code in {"BAD_MAGIC", "UNSUPPORTED_VERSION", "BAD_CHECKSUM"}


def test_every_truncation_is_rejected() -> None:
    for good in (encode_request(DEPOSIT), encode_reply(INSUFFICIENT)):
        for size in range(len(good)):
            decode_error(good[:size])


# --------------------------------------------------------------------------
# PROTOCOL.md stays true


def hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:04x}  {hexes:<47}  {text}")
    return "\n".join(lines)


def test_protocol_examples_match_the_code() -> None:
    doc = PROTOCOL_MD.read_text(encoding="utf-8")
    for msg in (DEPOSIT, DEPOSIT_OK, INSUFFICIENT):
        data = encode(msg)
        assert hexdump(data) in doc
        assert f"0x{zlib.crc32(data[:4] + data[8:]):08X}" in doc
    assert encode_request(DEPOSIT)[8:].decode() in doc
    assert len(encode_request(DEPOSIT)) == 104 == 0x68


@functools.cache
def minimal_client() -> dict[str, Any]:
    """Execute the doc's minimal client block (it only defines functions)."""
    doc = PROTOCOL_MD.read_text(encoding="utf-8")
    match = re.search(r"<!-- minimal-client.*?-->\n```python\n(.*?)```", doc, re.DOTALL)
    assert match is not None
    namespace: dict[str, Any] = {"__name__": "protocol_example"}
    exec(compile(match.group(1), str(PROTOCOL_MD), "exec"), namespace)
    assert len(match.group(1).splitlines()) < 50
    return namespace


@settings(max_examples=50)
@given(requests)
def test_minimal_client_matches_the_codec(req: Request) -> None:
    client = minimal_client()
    assert client["encode_request"](req.id, req.op, req.args, req.attempt) == encode_request(req)


def test_minimal_client_decodes_replies() -> None:
    decode = minimal_client()["decode_reply"]
    assert decode(encode_reply(DEPOSIT_OK)) == {
        "attempt": 2,
        "id": "a1b2c3d4-0007",
        "result": {"account": 1001, "balance": 12500},
        "status": "ok",
    }
    assert decode(encode_reply(INSUFFICIENT))["error"]["code"] == "INSUFFICIENT_FUNDS"
    good = encode_reply(DEPOSIT_OK)
    assert decode(good[:-1] + b"!") is None  # corrupted
    assert decode(encode_request(DEPOSIT)) is None  # not a reply
    assert decode(b"RT") is None
