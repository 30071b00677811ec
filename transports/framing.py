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
from collections import deque
from typing import Final

from transports.wire import MAX_MESSAGE_SIZE

__all__ = [
    "LENGTH_PREFIX_SIZE",
    "SEED_HEADER",
    "SEED_MAX_MESSAGE",
    "FramingError",
    "LengthPrefixDecoder",
    "SeedDecoder",
    "WrongFraming",
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
# How a seed header's first 4 bytes look from the lab's client: digits, then spaces.
_SEED_START_RE: Final = re.compile(rb"[0-9]+ *")


class FramingError(Exception):
    """The byte stream violates the framing; the decoder is now unusable."""


class WrongFraming(FramingError):
    """The stream is in the *other* framing: a client of one protocol reached a
    server of the other, which can tell it so. ``found``: "length" or "seed"."""

    def __init__(self, found: str) -> None:
        super().__init__(f"the peer sends {found} framing")
        self.found = found


class _StreamDecoder:
    """Shared buffer management: subclasses parse headers and bodies.

    Complete frames are cut straight out of the bytes ``feed`` receives (one
    copy per body) and queued; only a frame split across reads is assembled in
    a buffer, which therefore never holds more than one frame.
    """

    _header_size: int

    def __init__(self) -> None:
        #: Bodies of complete frames not yet taken, in order (``next_message`` takes one).
        self.ready: deque[bytes] = deque()
        self._ready_bytes = 0  # their size on the wire, headers included
        self._partial = bytearray()  # the frame being assembled, header first
        self._need = 0  # body length of the partial frame, once its header is checked
        self._error: FramingError | None = None

    def _body_length(self, data: bytes | bytearray | memoryview, pos: int) -> int:
        """Declared body length of the header at ``data[pos:]``; ``FramingError`` if invalid."""
        raise NotImplementedError

    def _broken(self, error: FramingError) -> FramingError:
        # Release the buffers at once: a hostile peer must not pin memory.
        self._error = error
        self.ready.clear()
        self._ready_bytes = 0
        self._partial = bytearray()
        return error

    def _check_usable(self) -> None:
        if self._error is not None:
            raise FramingError(f"decoder unusable after an earlier error: {self._error}")

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return self._ready_bytes + len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes read from the stream; raise ``FramingError`` on a bad header.

        Every header is checked the moment it is complete, before any byte
        after it is copied, so not one byte after a bad header is kept.
        """
        if self._error is not None:
            self._check_usable()
        if not isinstance(data, bytes):
            with memoryview(data) as raw, raw.cast("B") as view:
                self.feed(bytes(view))  # asyncio reads bytes; other buffers: one copy
            return
        size = self._header_size
        total = len(data)
        pos = 0
        try:
            if self._partial:
                pos = self._complete_partial(data)
                if self._partial:
                    return  # input exhausted inside the frame
            ready = self.ready
            while total - pos >= size:
                length = self._body_length(data, pos)
                end = pos + size + length
                if end > total:
                    break  # body incomplete: keep the checked header and what came
                ready.append(data[pos + size : end])  # bytes: a slice is a copy
                self._ready_bytes += end - pos
                pos = end
            else:
                if pos < total:
                    self._partial += data[pos:]  # part of a header
                return
            self._partial += data[pos:]
            self._need = length
        except FramingError as exc:
            raise self._broken(exc) from None

    def _complete_partial(self, data: bytes) -> int:
        """Continue the frame in ``_partial`` with ``data``; returns the bytes taken."""
        size, partial, pos = self._header_size, self._partial, 0
        if len(partial) < size:
            pos = min(size - len(partial), len(data))
            partial += data[:pos]
            if len(partial) < size:
                return pos
            self._need = self._body_length(partial, 0)
        missing = size + self._need - len(partial)
        chunk = data[pos : pos + missing]
        partial += chunk
        pos += len(chunk)
        if len(chunk) == missing:
            self.ready.append(bytes(partial[size:]))
            self._ready_bytes += len(partial)
            self._partial = bytearray()
        return pos

    def _next_body(self) -> bytes | None:
        """The next complete frame's body, or ``None`` if more data is needed."""
        if self._error is not None:
            self._check_usable()
        if not self.ready:
            return None
        body = self.ready.popleft()
        self._ready_bytes -= self._header_size + len(body)
        return body


# --------------------------------------------------------------------------
# Our framing: 4-byte big-endian length prefix.


def frame(message: bytes) -> bytes:
    """Prefix ``message`` with its 4-byte big-endian length."""
    if not 0 < len(message) <= MAX_MESSAGE_SIZE:
        raise FramingError(f"frame payload must be 1..{MAX_MESSAGE_SIZE} bytes")
    return _LENGTH.pack(len(message)) + message


class LengthPrefixDecoder(_StreamDecoder):
    """Splits a stream of ``frame``d messages; yields each payload as ``bytes``."""

    _header_size = LENGTH_PREFIX_SIZE

    def _body_length(self, data: bytes | bytearray | memoryview, pos: int) -> int:
        (length,) = _LENGTH.unpack_from(data, pos)
        if not 0 < length <= MAX_MESSAGE_SIZE:
            if _SEED_START_RE.fullmatch(data[pos : pos + LENGTH_PREFIX_SIZE]):
                raise WrongFraming("seed")  # never a valid length: >= 0x30000000
            raise FramingError(f"frame length {length} outside 1..{MAX_MESSAGE_SIZE}")
        return int(length)

    #: The next complete message, or ``None`` if more data is needed.
    next_message = _StreamDecoder._next_body


# --------------------------------------------------------------------------
# Seed framing: 64-byte ASCII decimal length, then UTF-8 text.


def seed_frame(text: str) -> bytes:
    """Frame ``text`` exactly as the lab's client does (for tests and tools)."""
    body = text.encode("utf-8")
    if len(body) > SEED_MAX_MESSAGE:
        raise FramingError(f"seed message of {len(body)} bytes exceeds {SEED_MAX_MESSAGE}")
    header = str(len(body)).encode("ascii")
    return header + b" " * (SEED_HEADER - len(header)) + body


def _looks_like_frame(data: bytes) -> bool:
    """Whether ``data`` starts like ``frame`` output: a valid length, then a message's magic."""
    if len(data) < LENGTH_PREFIX_SIZE + 2 or data[4:6] != b"RT":
        return False
    length: int = _LENGTH.unpack_from(data)[0]
    return 0 < length <= MAX_MESSAGE_SIZE


class SeedDecoder(_StreamDecoder):
    """Splits a stream of lab-client messages; yields each one as ``str``.

    A declared length of 0 is accepted and yields ``""``: the lab client sends
    exactly that for an empty input line, and refusing it would drop the
    connection of a well-behaved client. (A connection closed before a header,
    which the lab server reads as an empty header, is the caller's EOF, not a
    framing matter.)
    """

    _header_size = SEED_HEADER

    def _body_length(self, data: bytes | bytearray | memoryview, pos: int) -> int:
        header = bytes(data[pos : pos + SEED_HEADER])
        match = _SEED_HEADER_RE.fullmatch(header)
        if match is None:
            if _looks_like_frame(header):
                raise WrongFraming("length")
            raise FramingError(f"seed header is not a padded decimal length: {header!r}")
        length = int(match.group(1))
        if length > SEED_MAX_MESSAGE:
            raise FramingError(f"seed message length {length} exceeds {SEED_MAX_MESSAGE}")
        return length

    def next_message(self) -> str | None:
        """The next complete message, or ``None`` if more data is needed."""
        body = self._next_body()
        if body is None:
            return None
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._broken(FramingError(f"seed message is not UTF-8: {exc.reason}")) from None
