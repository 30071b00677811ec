"""What a benchmark client sends to a peer, and how it sees that a reply is complete and good.

``service_workload``: our services' requests (text, numbers, bank deposits), to
ours or to the echo server; ``seed_workload``: the lab's protocol, to the
seed peer.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services import text
from transports.framing import frame, seed_frame
from transports.wire import Request, Status, WireError, decode_reply, encode_request

TEXT = "hello world"


@dataclass
class Workload:
    """Requests for one peer: ``message(client, seq)`` -> (bytes to send, reply token).

    ``framing`` is ``length`` (4-byte prefix), ``datagram`` or ``fixed`` (the
    seed's unframed reply, ``reply_size`` bytes). A UDP reply counts only if it
    contains the token (so a late reply never answers a later request).
    ``check`` validates the first reply of every client.
    """

    framing: str
    message: Callable[[int, int], tuple[bytes, bytes]]
    check: Callable[[bytes], bool]
    reply_size: int = 0


def _ok_reply(data: bytes) -> bool:
    with contextlib.suppress(WireError):
        return decode_reply(data).status is Status.OK
    return False


def _cycled(requests: list[Request], stream: bool) -> Callable[[int, int], tuple[bytes, bytes]]:
    table = []
    for request in requests:
        data = encode_request(request)
        table.append((frame(data) if stream else data, f'"{request.id}"'.encode()))
    size = len(table)
    return lambda client, seq: table[(client + seq) % size]


def service_workload(
    service: str,
    transport: str,
    *,
    token: str = "",
    echo: bool = False,
    args: dict[str, Any] | None = None,
) -> Workload:
    """Requests of ``service`` as our clients send them (to ours, or to the echo server).

    ``args``: text and numbers requests with these arguments instead of the usual ones.
    """
    stream = transport == "tcp"
    framing = "length" if stream else "datagram"
    if service == "bank":
        run = f"{time.monotonic_ns() % 10**9:x}"

        def deposit(client: int, seq: int) -> tuple[bytes, bytes]:
            req = Request(f"d{run}-{client}-{seq}", "bank.deposit", {"token": token, "amount": 1})
            data = encode_request(req)
            return (frame(data) if stream else data), f'"{req.id}"'.encode()

        return Workload(framing, deposit, _ok_reply)
    if service == "numbers":
        op, usual = "numbers.check", {"n": "2147483647"}
    else:
        op, usual = "text.convert", {"text": TEXT}
    requests = [Request(f"q{n}", op, usual if args is None else args) for n in range(64)]
    message = _cycled(requests, stream)
    if echo:
        return Workload(framing, message, lambda data: data.startswith(b"RT"))
    return Workload(framing, message, _ok_reply)


def seed_workload() -> Workload:
    data = seed_frame(TEXT)
    reply = text.seed_reply(TEXT).encode("utf-8")
    return Workload("fixed", lambda c, s: (data, b""), lambda r: r == reply, len(reply))
