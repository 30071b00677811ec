"""A long prime check does not hold up the numbers server's other clients.

Real server processes (``python -m services serve numbers``) over loopback
TCP. One connection asks for three 400-digit prime checks (~30 ms each), a
second connection asks for a 10-digit check 20 ms later. With prime
processes (the default) the long checks run in another process and the short
one is answered first; with ``--prime-processes 0`` the event loop tests every
number itself, so the short check waits for all three: the order shows which.
"""

from __future__ import annotations

import selectors
import socket
import time

import pytest

from services.primes import MAX_DIGITS, is_probable_prime
from tests.integration.servers import serve_process
from transports.framing import LengthPrefixDecoder, frame
from transports.wire import Reply, Request, decode_reply, encode_request

#: Each test starts server or client processes: seconds per test.
pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def first_prime_above(n: int) -> int:
    n += 1 + n % 2
    while not is_probable_prime(n):
        n += 2
    return n


LONG_PRIME = first_prime_above(10 ** (MAX_DIGITS - 1))  # 400 digits


def request(request_id: str, n: int) -> bytes:
    return frame(encode_request(Request(request_id, "numbers.check", {"n": str(n)})))


def replies_in_order(long_conn: socket.socket, short_conn: socket.socket, count: int) -> list[str]:
    """The ids of the next ``count`` replies on both connections, as they arrive."""
    order: list[str] = []
    decoders = {long_conn: LengthPrefixDecoder(), short_conn: LengthPrefixDecoder()}
    with selectors.DefaultSelector() as selector:
        for conn in decoders:
            selector.register(conn, selectors.EVENT_READ)
        deadline = time.monotonic() + 30.0
        while len(order) < count:
            assert time.monotonic() < deadline, f"replies missing; got {order}"
            for key, _ in selector.select(timeout=1.0):
                conn = key.fileobj
                assert isinstance(conn, socket.socket)
                data = conn.recv(65536)
                assert data, "the server closed a connection"
                decoders[conn].feed(data)
                while (message := decoders[conn].next_message()) is not None:
                    order.append(prime_reply(message).id)
    return order


def prime_reply(message: bytes) -> Reply:
    reply = decode_reply(message)
    assert reply.result is not None and reply.result["prime"] is True
    return reply


@pytest.mark.parametrize(("processes", "short_first"), [("1", True), ("0", False)])
def test_a_long_prime_check_does_not_hold_up_other_clients(
    processes: str, short_first: bool
) -> None:
    with (
        serve_process("numbers", "--prime-processes", processes) as server,
        socket.create_connection((HOST, server.port), timeout=10) as long_conn,
        socket.create_connection((HOST, server.port), timeout=10) as short_conn,
    ):
        long_conn.sendall(b"".join(request(f"long{i}", LONG_PRIME) for i in range(3)))
        time.sleep(0.02)  # the long checks are under way
        short_conn.sendall(request("short", 2147483647))
        order = replies_in_order(long_conn, short_conn, 4)
    if short_first:
        assert order.index("short") < 3, order  # at least one long check still running
    else:
        assert order == ["long0", "long1", "long2", "short"]


def test_each_worker_process_tests_long_numbers_and_stops_cleanly() -> None:
    """``--workers 2``: every worker starts its own prime process, and stops it."""
    with serve_process("numbers", "--workers", "2") as server:
        for i in range(4):  # new connections: the kernel spreads them over the workers
            with socket.create_connection((HOST, server.port), timeout=10) as conn:
                conn.sendall(request(f"long{i}", LONG_PRIME))
                decoder = LengthPrefixDecoder()
                while (message := decoder.next_message()) is None:
                    chunk = conn.recv(65536)
                    assert chunk, "the server closed the connection"
                    decoder.feed(chunk)
                assert prime_reply(message).id == f"long{i}"
    assert server.counters["executed"] == 4  # summed over the workers
