"""Stream framing for TCP, sans-I/O: turn a byte stream into messages and back.

Two framings live here, both as buffer-fed decoders in the h11 style (the
caller reads the socket and ``feed``s whatever arrived; ``next_message``
returns complete messages, or ``None`` when more bytes are needed):

* ``frame`` / ``LengthPrefixDecoder``: our protocol. A 4-byte big-endian
  unsigned length, then that many bytes holding one ``transports.wire``
  message. Lengths of 0 or above ``MAX_MESSAGE_SIZE`` are errors.
* ``seed_frame`` / ``SeedDecoder``: the lab's ("seed") framing, so its
  unmodified clients can talk to our servers. A 64-byte ASCII header with the
  decimal byte length padded with spaces, then that many bytes of UTF-8 text.
  Seed replies are raw text without a header, so they need no framing.

A header is validated as soon as its last byte arrives, before any of its body
is kept, and a ``FramingError`` leaves the decoder unusable: after a bad
header the stream cannot be resynchronised, so the connection must be closed.
"""

from __future__ import annotations

import re
import struct
from typing import Final, Generic, TypeVar

from transports.wire import MAX_MESSAGE_SIZE

__all__ = [
    "LENGTH_PREFIX_SIZE",
    "SEED_HEADER",
    "SEED_MAX_MESSAGE",
    "FramingError",
    "LengthPrefixDecoder",
    "SeedDecoder",
    "frame",
    "seed_frame",
]

LENGTH_PREFIX_SIZE: Final = 4
SEED_HEADER: Final = 64
#: Largest seed message body in bytes (the lab's messages are a line of text).
SEED_MAX_MESSAGE: Final = 4096

_LENGTH: Final = struct.Struct(">I")
# Digits, optionally padded with spaces or NULs on either side (the lab pads
# with spaces on the right; NULs tolerate clients that zero-fill).
_SEED_HEADER_RE: Final = re.compile(rb"[ \x00]*([0-9]+)[ \x00]*")
# Consumed bytes are dropped from the buffer front only once they are both
# plentiful and at least half the buffer, so compaction is amortised O(1).
_COMPACT_AT: Final = 64 * 1024

T = TypeVar("T")


class FramingError(Exception):
    """The byte stream violates the framing; the decoder is now unusable."""


class _StreamDecoder(Generic[T]):
    """Shared buffer management: subclasses parse headers and bodies."""

    _header_size: int

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed frame
        self._scan = 0  # start of the first frame whose header is not yet checked
        self._error: FramingError | None = None

    def _body_length(self, header: bytes) -> int:
        """Declared body length of ``header``; raise ``FramingError`` if invalid."""
        raise NotImplementedError

    def _convert(self, body: bytes) -> T:
        """Turn a complete body into the message returned to the caller."""
        raise NotImplementedError

    def _broken(self, error: FramingError) -> FramingError:
        # Release the buffer at once: a hostile peer must not pin memory.
        self._error = error
        self._buf = bytearray()
        self._pos = self._scan = 0
        return error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise FramingError(f"decoder unusable after an earlier error: {self._error}")

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the stream; raise ``FramingError`` on a bad header.

        Input is taken one frame part at a time and every header is checked the
        moment it is complete, so not one byte after a bad header is copied.
        """
        self._check_usable()
        size = self._header_size
        buf = self._buf
        with memoryview(data) as raw, raw.cast("B") as view:
            taken, total = 0, len(view)
            while taken < total:
                # _scan is the start of the frame being assembled; all before it
                # is complete frames waiting for next_message().
                have = len(buf) - self._scan
                if have < size:
                    chunk = view[taken : taken + size - have]
                    buf += chunk
                    taken += len(chunk)
                    if len(buf) - self._scan < size:
                        break  # header still incomplete, input exhausted
                try:
                    length = self._body_length(bytes(buf[self._scan : self._scan + size]))
                except FramingError as exc:
                    raise self._broken(exc) from None
                end = self._scan + size + length
                chunk = view[taken : taken + end - len(buf)]
                buf += chunk
                taken += len(chunk)
                if len(buf) < end:
                    break  # body incomplete, input exhausted
                self._scan = end

    def next_message(self) -> T | None:
        """The next complete message, or ``None`` if more data is needed."""
        self._check_usable()
        if self._scan == self._pos:
            return None  # feed() stops _scan at the first incomplete frame
        start = self._pos + self._header_size
        length = self._body_length(bytes(self._buf[self._pos : start]))
        body = bytes(self._buf[start : start + length])
        self._pos = start + length
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = self._scan = 0
        elif self._pos >= _COMPACT_AT and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        try:
            return self._convert(body)
        except FramingError as exc:
            raise self._broken(exc) from None


# --------------------------------------------------------------------------
# Our framing: 4-byte big-endian length prefix.


def frame(message: bytes) -> bytes:
    """Prefix ``message`` with its 4-byte big-endian length."""
    if not 0 < len(message) <= MAX_MESSAGE_SIZE:
        raise FramingError(f"frame payload must be 1..{MAX_MESSAGE_SIZE} bytes")
    return _LENGTH.pack(len(message)) + message


class LengthPrefixDecoder(_StreamDecoder[bytes]):
    """Splits a stream of ``frame``d messages; yields each payload as ``bytes``."""

    _header_size = LENGTH_PREFIX_SIZE

    def _body_length(self, header: bytes) -> int:
        (length,) = _LENGTH.unpack(header)
        if not 0 < length <= MAX_MESSAGE_SIZE:
            raise FramingError(f"frame length {length} outside 1..{MAX_MESSAGE_SIZE}")
        return int(length)

    def _convert(self, body: bytes) -> bytes:
        return body


# --------------------------------------------------------------------------
# Seed framing: 64-byte ASCII decimal length, then UTF-8 text.


def seed_frame(text: str) -> bytes:
    """Frame ``text`` exactly as the lab's client does (for tests and tools)."""
    body = text.encode("utf-8")
    if len(body) > SEED_MAX_MESSAGE:
        raise FramingError(f"seed message of {len(body)} bytes exceeds {SEED_MAX_MESSAGE}")
    header = str(len(body)).encode("ascii")
    return header + b" " * (SEED_HEADER - len(header)) + body


class SeedDecoder(_StreamDecoder[str]):
    """Splits a stream of lab-client messages; yields each one as ``str``.

    A declared length of 0 is accepted and yields ``""``: the lab client sends
    exactly that for an empty input line, and refusing it would drop the
    connection of a well-behaved client. (A connection closed before a header,
    which the lab server reads as an empty header, is the caller's EOF, not a
    framing matter.)
    """

    _header_size = SEED_HEADER

    def _body_length(self, header: bytes) -> int:
        match = _SEED_HEADER_RE.fullmatch(header)
        if match is None:
            raise FramingError(f"seed header is not a padded decimal length: {header!r}")
        length = int(match.group(1))
        if length > SEED_MAX_MESSAGE:
            raise FramingError(f"seed message length {length} exceeds {SEED_MAX_MESSAGE}")
        return length

    def _convert(self, body: bytes) -> str:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FramingError(f"seed message is not UTF-8: {exc.reason}") from None
