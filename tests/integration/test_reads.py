"""How the drivers read from the kernel, over real loopback sockets.

Both drivers cap the bytes asked of one receive call (``driver.limit_read_size``):
asyncio's default of 256 KiB cost an mmap, an mremap and a munmap per message.
The caps must not change what is received.
"""

from __future__ import annotations

import asyncio
import socket

from services.numbers import NumbersService
from services.text import MAX_TEXT_CHARS, TextService
from tests.integration.servers import running
from transports.aio.driver import STREAM_READ_SIZE
from transports.framing import LENGTH_PREFIX_SIZE, frame
from transports.wire import MAX_MESSAGE_SIZE, Request, decode_reply, encode_request

HOST = "127.0.0.1"


def _read_frames(sock: socket.socket, count: int) -> list[bytes]:
    buffer, frames = b"", list[bytes]()
    while len(frames) < count:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {len(frames)} of {count} replies"
        buffer += chunk
        while len(buffer) >= LENGTH_PREFIX_SIZE:
            size = int.from_bytes(buffer[:LENGTH_PREFIX_SIZE], "big")
            if len(buffer) < LENGTH_PREFIX_SIZE + size:
                break
            frames.append(buffer[LENGTH_PREFIX_SIZE : LENGTH_PREFIX_SIZE + size])
            buffer = buffer[LENGTH_PREFIX_SIZE + size :]
    assert buffer == b"", "more bytes than replies"
    return frames


def test_a_burst_far_larger_than_one_read_is_answered_in_full_and_in_order() -> None:
    # 160 frames of 4 KB in one write: ~10x the read size, so frames straddle
    # reads at every kind of offset and the connection cap (32) pauses reading.
    texts = [f"{i:03d} " + "Ab" * (MAX_TEXT_CHARS // 2 - 2) for i in range(160)]
    burst = b"".join(
        frame(encode_request(Request(f"big{i}", "text.convert", {"text": text})))
        for i, text in enumerate(texts)
    )
    assert len(burst) > 8 * STREAM_READ_SIZE

    async def scenario() -> list[bytes]:
        async with running("tcp", TextService()) as server:
            loop = asyncio.get_running_loop()
            with socket.create_connection((HOST, server.port), timeout=10) as sock:
                replies = await loop.run_in_executor(None, _exchange, sock, burst, len(texts))
                (connection,) = server.context.connections
                transport = getattr(connection, "transport", None)
                assert getattr(transport, "max_size", None) == STREAM_READ_SIZE
            return replies

    replies = [decode_reply(data) for data in asyncio.run(scenario())]
    assert [r.id for r in replies] == [f"big{i}" for i in range(len(texts))]
    assert [r.result for r in replies] == [{"lower": t.lower(), "upper": t.upper()} for t in texts]


def _exchange(sock: socket.socket, burst: bytes, count: int) -> list[bytes]:
    sock.sendall(burst)
    return _read_frames(sock, count)


def test_a_maximal_datagram_is_answered_and_one_byte_more_is_refused() -> None:
    def request_of_size(size: int, request_id: str) -> bytes:
        # Leading zeros fill the datagram: they do not count against the
        # numbers service's 400 digits (services take no extra argument keys).
        base = len(encode_request(Request(request_id, "numbers.check", {"n": "12321"})))
        args = {"n": "0" * (size - base) + "12321"}
        data = encode_request(Request(request_id, "numbers.check", args))
        assert len(data) == size
        return data

    async def scenario() -> tuple[bytes, int]:
        async with running("udp", NumbersService()) as server:
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((HOST, server.port))
                sock.settimeout(5)
                # Too large: refused by size. The budget for a reply is 3x the
                # request, so the maximal request itself is answered.
                sock.send(request_of_size(MAX_MESSAGE_SIZE, "ok") + b"!")
                sock.send(request_of_size(MAX_MESSAGE_SIZE, "ok"))
                reply = await loop.run_in_executor(None, sock.recv, 1 << 17)
            return reply, server.context.endpoint.counters["rejected_oversize_datagram"]

    reply, oversize = asyncio.run(scenario())
    decoded = decode_reply(reply)
    expected = {"n": "12321", "prime": False, "palindrome": True, "digits": 5}
    assert (decoded.id, decoded.result) == ("ok", expected)
    assert oversize == 1
