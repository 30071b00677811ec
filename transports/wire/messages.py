"""The wire's vocabulary: header layout, limits, error codes, Request, Reply, WireError.

One message is one UDP datagram or one TCP frame payload (see
``transports.framing`` for the TCP framing and ``transports/PROTOCOL.md`` for
the normative description)::

    offset size field
    0      2    magic b"RT"
    2      1    version = 1
    3      1    kind: b"Q" request, b"R" reply
    4      4    CRC-32 (zlib.crc32, big-endian) over bytes 0..3, then the body
    8      n    body: UTF-8 JSON object
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final, NoReturn

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

# The header, shared by the encoder and the decoder.
_PREFIX: Final = MAGIC + bytes([PROTOCOL_VERSION])
_CRC: Final = struct.Struct(">I")
_HEAD_CRC: Final = {kind: zlib.crc32(_PREFIX + kind) for kind in (KIND_REQUEST, KIND_REPLY)}


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
