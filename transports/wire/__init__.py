"""Wire envelope of the testbed protocol: pure encode/decode, no I/O.

Like h11, this package only turns bytes into objects and back; endpoints own
the sockets. Both directions validate every field, so an invalid message is
never produced and never accepted; every failure is a ``WireError`` with a
stable ``code``. The parts: ``messages`` (header layout, limits, Request,
Reply, WireError), ``checks`` (field validation shared by both directions),
``encode``, ``decode`` (header checks and the strict decoder) and ``fast``
(the msgspec path the strict decoder backs).
"""

from transports.wire.decode import decode_message, decode_reply, decode_request
from transports.wire.encode import encode_reply, encode_request
from transports.wire.messages import (
    ERROR_CODE_MAX,
    ERROR_MESSAGE_MAX,
    HEADER_SIZE,
    ID_MAX,
    KIND_REPLY,
    KIND_REQUEST,
    MAGIC,
    MAX_ATTEMPT,
    MAX_DEPTH,
    MAX_MESSAGE_SIZE,
    OP_MAX,
    PROTOCOL_VERSION,
    WIRE_ERROR_CODES,
    Reply,
    Request,
    Status,
    WireError,
)

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
