"""Unit and property tests of stream framing (transports.framing): no sockets."""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transports.framing import (
    SEED_HEADER,
    SEED_MAX_MESSAGE,
    FramingError,
    LengthPrefixDecoder,
    SeedDecoder,
    WrongFraming,
    frame,
    seed_frame,
)
from transports.wire import MAX_MESSAGE_SIZE, Request, encode_request

Decoder = LengthPrefixDecoder | SeedDecoder


def drain(decoder: Decoder) -> list[bytes | str]:
    out: list[bytes | str] = []
    while (msg := decoder.next_message()) is not None:
        out.append(msg)
    return out


def feed_chunks(decoder: Decoder, stream: bytes, cuts: Iterable[int]) -> list[bytes | str]:
    """Feed ``stream`` cut at ``cuts``, draining after every chunk."""
    out: list[bytes | str] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        decoder.feed(stream[start:cut])
        out += drain(decoder)
        start = cut
    return out


def lab_frame(msg: str) -> bytes:
    """The lab client's framing, verbatim in spirit (HEADER = 64, FORMAT = utf-8)."""
    message = msg.encode("utf-8")
    send_length = str(len(message)).encode("utf-8")
    send_length += b" " * (64 - len(send_length))
    return send_length + message


def assert_unusable(decoder: Decoder) -> None:
    assert decoder.buffered == 0  # buffer released
    with pytest.raises(FramingError):
        decoder.feed(b"x")
    with pytest.raises(FramingError):
        decoder.next_message()


# --------------------------------------------------------------------------
# Length-prefixed framing

MESSAGES = [b"a", b"hello", bytes(range(7)), b"\x00\x00\x00\x00", b"last one"]
STREAM = b"".join(frame(m) for m in MESSAGES)


def test_frame_format() -> None:
    assert frame(b"hello") == b"\x00\x00\x00\x05hello"
    assert frame(b"x" * MAX_MESSAGE_SIZE)[:4] == struct.pack(">I", MAX_MESSAGE_SIZE)
    with pytest.raises(FramingError):
        frame(b"")
    with pytest.raises(FramingError):
        frame(b"x" * (MAX_MESSAGE_SIZE + 1))


def test_every_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        assert feed_chunks(LengthPrefixDecoder(), STREAM, [cut]) == MESSAGES


def test_every_pair_of_split_points() -> None:
    for first in range(len(STREAM) + 1):
        for second in range(first, len(STREAM) + 1):
            assert feed_chunks(LengthPrefixDecoder(), STREAM, [first, second]) == MESSAGES


def test_byte_by_byte_and_drain_only_at_end() -> None:
    decoder = LengthPrefixDecoder()
    assert feed_chunks(decoder, STREAM, range(len(STREAM))) == MESSAGES
    decoder = LengthPrefixDecoder()
    for i in range(len(STREAM)):
        decoder.feed(STREAM[i : i + 1])
    assert decoder.buffered == len(STREAM)
    assert drain(decoder) == MESSAGES
    assert decoder.buffered == 0


@settings(max_examples=150)
@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    st.lists(st.integers(0, 4000), max_size=20),
    st.booleans(),
)
def test_random_chunkings(messages: list[bytes], cuts: list[int], drain_each: bool) -> None:
    stream = b"".join(frame(m) for m in messages)
    cuts = [c for c in cuts if c <= len(stream)]
    decoder = LengthPrefixDecoder()
    if drain_each:
        assert feed_chunks(decoder, stream, cuts) == messages
    else:
        start = 0
        for cut in [*sorted(cuts), len(stream)]:
            decoder.feed(memoryview(stream)[start:cut])
            start = cut
        assert drain(decoder) == messages
    assert decoder.buffered == 0
    assert decoder.next_message() is None


def test_partial_data_returns_none_and_counts_buffered() -> None:
    decoder = LengthPrefixDecoder()
    assert decoder.next_message() is None
    decoder.feed(b"")
    decoder.feed(b"\x00\x00")
    assert decoder.next_message() is None
    decoder.feed(b"\x00\x03ab")
    assert (decoder.next_message(), decoder.buffered) == (None, 6)
    decoder.feed(bytearray(b"c\x00"))
    assert (decoder.next_message(), decoder.buffered) == (b"abc", 1)
    assert decoder.next_message() is None


def test_max_size_frame_accepted() -> None:
    decoder = LengthPrefixDecoder()
    decoder.feed(frame(b"m" * MAX_MESSAGE_SIZE) + frame(b"n"))
    assert drain(decoder) == [b"m" * MAX_MESSAGE_SIZE, b"n"]


@pytest.mark.parametrize("length", [0, MAX_MESSAGE_SIZE + 1, 2**31, 2**32 - 1])
def test_bad_length_raises_when_header_completes(length: int) -> None:
    header = struct.pack(">I", length)
    decoder = LengthPrefixDecoder()
    decoder.feed(header[:3])  # incomplete header: nothing to judge yet
    with pytest.raises(FramingError):
        decoder.feed(header[3:])
    assert_unusable(decoder)


def test_bad_header_after_good_frames_in_one_chunk() -> None:
    decoder = LengthPrefixDecoder()
    with pytest.raises(FramingError):
        decoder.feed(frame(b"ok") + b"\xff\xff\xff\xff" + b"body" * 100)
    assert_unusable(decoder)


def test_huge_header_allocates_nothing() -> None:
    junk = bytes(4 << 20)  # the claimed body "arriving" in the same read
    data = frame(b"fine") + struct.pack(">I", 2**32 - 1) + junk
    decoder = LengthPrefixDecoder()
    tracemalloc.start()
    try:
        with pytest.raises(FramingError):
            decoder.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024  # nothing after the bad header was copied


def test_many_small_messages_in_one_chunk_is_linear() -> None:
    messages = [str(i).encode() for i in range(100_000)]
    stream = b"".join(frame(m) for m in messages)
    decoder = LengthPrefixDecoder()
    start = time.perf_counter()
    decoder.feed(stream)
    assert drain(decoder) == messages
    # Quadratic copying would move ~100k x 400 KB here: minutes, not a second.
    assert time.perf_counter() - start < 2.0


def test_compaction_keeps_partial_frames() -> None:
    # Big chunks that always end mid-frame exercise compaction with a live tail.
    messages = [bytes([i % 251]) * (1 + i % 97) for i in range(5000)]
    stream = b"".join(frame(m) for m in messages)
    cuts = range(0, len(stream), 70_001)
    assert feed_chunks(LengthPrefixDecoder(), stream, cuts) == messages


# --------------------------------------------------------------------------
# Seed framing

TEXTS = ["hello world", "", "Grüße ✓ 𝄞", "12321", "!DISCONNECT"]
SEED_STREAM = b"".join(lab_frame(t) for t in TEXTS)


@pytest.mark.parametrize("text", [*TEXTS, "x" * SEED_MAX_MESSAGE, "é" * (SEED_MAX_MESSAGE // 2)])
def test_seed_frame_matches_the_lab_client(text: str) -> None:
    assert seed_frame(text) == lab_frame(text)
    assert len(seed_frame(text)) == SEED_HEADER + len(text.encode())
    decoder = SeedDecoder()
    decoder.feed(lab_frame(text))
    assert drain(decoder) == [text]


def test_seed_header_is_byte_length_padded_with_spaces() -> None:
    assert seed_frame("héllo") == b"6" + b" " * 63 + "héllo".encode()
    with pytest.raises(FramingError):
        seed_frame("x" * (SEED_MAX_MESSAGE + 1))
    with pytest.raises(FramingError):
        seed_frame("é" * (SEED_MAX_MESSAGE // 2 + 1))  # counted in bytes


def test_seed_every_split_point() -> None:
    for cut in range(len(SEED_STREAM) + 1):
        assert feed_chunks(SeedDecoder(), SEED_STREAM, [cut]) == TEXTS


def test_seed_byte_by_byte() -> None:
    assert feed_chunks(SeedDecoder(), SEED_STREAM, range(len(SEED_STREAM))) == TEXTS


@settings(max_examples=100)
@given(
    st.lists(st.text(max_size=60), max_size=8),
    st.lists(st.integers(0, 1500), max_size=20),
)
def test_seed_random_chunkings(texts: list[str], cuts: list[int]) -> None:
    stream = b"".join(seed_frame(t) for t in texts)
    cuts = [c for c in cuts if c <= len(stream)]
    assert feed_chunks(SeedDecoder(), stream, cuts) == texts


@pytest.mark.parametrize(
    "header",
    [
        b"11" + b" " * 62,
        b" " * 62 + b"11",
        b"   11" + b" " * 59,
        b"11" + b"\x00" * 62,
        b"\x00" * 30 + b"11" + b" " * 32,
        b"0011" + b" " * 60,
    ],
)
def test_seed_accepted_headers(header: bytes) -> None:
    decoder = SeedDecoder()
    decoder.feed(header + b"hello world")
    assert drain(decoder) == ["hello world"]


@pytest.mark.parametrize(
    "header",
    [
        b" " * 64,
        b"\x00" * 64,
        b"abc" + b" " * 61,
        b"-5" + b" " * 62,
        b"+5" + b" " * 62,
        b"1 1" + b" " * 61,
        b"1_1" + b" " * 61,
        b"0x10" + b" " * 60,
        b"\t11" + b" " * 61,
        b"11\n" + b" " * 61,
        "٣".encode() + b" " * 62,  # Arabic-Indic digit: int() would accept it
        b"4097" + b" " * 60,
        b"9" * 64,
    ],
)
def test_seed_rejected_headers(header: bytes) -> None:
    assert len(header) == SEED_HEADER
    decoder = SeedDecoder()
    decoder.feed(header[:-1])  # not judged before the 64th byte
    with pytest.raises(FramingError):
        decoder.feed(header[-1:] + b"x" * 10)
    assert_unusable(decoder)


def test_seed_zero_length_is_empty_message() -> None:
    decoder = SeedDecoder()
    decoder.feed(b"0" + b" " * 63 + seed_frame("next"))
    assert drain(decoder) == ["", "next"]


def test_seed_invalid_utf8_body() -> None:
    decoder = SeedDecoder()
    decoder.feed(b"2" + b" " * 63 + b"\xc3\x28")
    with pytest.raises(FramingError):
        decoder.next_message()
    assert_unusable(decoder)


def test_seed_partial_body_waits() -> None:
    decoder = SeedDecoder()
    decoder.feed(seed_frame("hello")[:-1])
    assert decoder.next_message() is None
    assert decoder.buffered == SEED_HEADER + 4
    decoder.feed(b"o")
    assert decoder.next_message() == "hello"
    assert decoder.buffered == 0


# -- the other framing: a client of one protocol at a server of the other --------


def test_a_testbed_frame_in_a_seed_stream_is_named() -> None:
    request = frame(encode_request(Request("r-1", "text.convert", {"text": "hi"}, 1)))
    with pytest.raises(WrongFraming) as raised:
        SeedDecoder().feed(request)
    assert raised.value.found == "length"


@pytest.mark.parametrize("text", ["", "hello", "x" * 4096, "!DISCONNECT"])
def test_a_seed_message_in_a_length_prefixed_stream_is_named(text: str) -> None:
    with pytest.raises(WrongFraming) as raised:
        LengthPrefixDecoder().feed(seed_frame(text)[:4])  # the first 4 bytes decide
    assert raised.value.found == "seed"


@pytest.mark.parametrize(
    ("decoder", "stream"),
    [
        (SeedDecoder, b"\x00\x00\x00\x10XX" + b" " * 58),  # a length, then no magic
        (SeedDecoder, b"\x00\x00\xff\xffRT" + b" " * 58),  # magic, length over the limit
        (SeedDecoder, b"x" * SEED_HEADER),
        (LengthPrefixDecoder, b" 12 "),  # a seed header starts with its digits
        (LengthPrefixDecoder, b"\xff\xff\xff\xff"),
    ],
)
def test_other_garbage_is_a_plain_framing_error(decoder: type[Decoder], stream: bytes) -> None:
    with pytest.raises(FramingError) as raised:
        decoder().feed(stream)
    assert not isinstance(raised.value, WrongFraming)
