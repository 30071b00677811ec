"""The server endpoint and the drivers' shared limits, without sockets.

* UDP anti-amplification: ``ServerEndpoint.limit_reply`` / ``handle(budget=)``
  keep every reply within a byte budget (3x the datagram, as QUIC).
* Bad input through the endpoint changes nothing in the ledger.
* ``ServerContext.execute`` (the endpoint's two steps on a driver): malformed
  input never reaches the worker pool; in-flight requests are counted and capped.
* The TCP connection protocol over a fake transport: per-connection and
  server-wide in-flight caps (pause_reading / resume_reading), a peer that
  does not read its replies, the slowloris frame timeout and the idle timeout;
  one whole frame per read or several keeps the same caps and counts
  zero-probability fault links the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.bank import BankService
from services.ledger import Ledger
from services.text import TextService
from transports.aio.driver import ServerContext, ServerLimits
from transports.aio.tcp import _ServerConnection
from transports.endpoint import RESULT_TOO_LARGE, ServerEndpoint
from transports.faults import LinkFaults
from transports.framing import frame
from transports.semantics import Semantics
from transports.service import CallContext, JsonObject
from transports.wire import (
    MAX_MESSAGE_SIZE,
    Reply,
    Request,
    Status,
    decode_reply,
    encode_reply,
    encode_request,
)

FACTOR = 3  # ServerLimits.amplification_factor


def raw_request(body: bytes, kind: bytes = b"Q") -> bytes:
    """A message with a valid checksum around any body (the wire layout by hand)."""
    import struct
    import zlib

    head = b"RT\x01" + kind
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def request(op: str, args: dict[str, Any], req_id: str = "r1", attempt: int = 1) -> bytes:
    return encode_request(Request(req_id, op, args, attempt))


# -- anti-amplification ------------------------------------------------------


def test_short_malformed_request_gets_a_truncated_error_within_budget() -> None:
    endpoint = ServerEndpoint(TextService())
    data = raw_request(b'{"id":"abcdefghij","zzzzzzzz":1}')  # answerable: a valid id
    full = endpoint.handle(data, 0.0)
    assert full is not None and len(full) > FACTOR * len(data)  # the risk is real
    limited = endpoint.handle(data, 0.0, budget=FACTOR * len(data))
    assert limited is not None and len(limited) <= FACTOR * len(data)
    reply, unlimited = decode_reply(limited), decode_reply(full)
    assert (reply.id, reply.error_code) == ("abcdefghij", "MALFORMED")
    assert reply.error_message and unlimited.error_message
    assert unlimited.error_message.startswith(reply.error_message)
    assert endpoint.counters["amplification_truncated"] == 1


def test_reply_dropped_when_not_even_an_empty_error_fits() -> None:
    endpoint = ServerEndpoint(TextService())
    data = raw_request(b'{"id":"a"}')  # 18 bytes: no error reply is 54 bytes or less
    assert endpoint.handle(data, 0.0) is not None
    assert endpoint.handle(data, 0.0, budget=FACTOR * len(data)) is None
    assert endpoint.counters["amplification_dropped"] == 1


def test_ok_reply_over_budget_becomes_result_too_large() -> None:
    endpoint = ServerEndpoint(TextService())
    # U+0390 upper-cases to three code points (6 bytes): 2 bytes in, 8 out.
    data = request("text.convert", {"text": "\u0390" * 500})
    assert len(endpoint.handle(data, 0.0) or b"") > FACTOR * len(data)
    limited = endpoint.handle(data, 0.0, budget=FACTOR * len(data))
    assert limited is not None and len(limited) <= FACTOR * len(data)
    assert decode_reply(limited).error_code == RESULT_TOO_LARGE
    assert endpoint.counters["amplification_replaced"] == 1


def test_ordinary_replies_are_untouched_by_the_budget() -> None:
    endpoint = ServerEndpoint(TextService())
    data = request("text.convert", {"text": "hello world " * 300})
    assert endpoint.handle(data, 0.0, budget=FACTOR * len(data)) == endpoint.handle(data, 0.0)
    assert not any(k.startswith("amplification") for k in endpoint.counters)


def test_reply_cache_hits_are_limited_too() -> None:
    endpoint = ServerEndpoint(TextService(), Semantics.AT_MOST_ONCE)
    data = request("text.convert", {"text": "\u0390" * 500})
    assert decode_reply(endpoint.handle(data, 0.0) or b"").status is Status.OK
    retry = endpoint.handle(data, 1.0, budget=FACTOR * len(data))
    assert retry is not None and len(retry) <= FACTOR * len(data)
    assert endpoint.counters["reply_cache_hits"] == 1


def test_limit_reply_cuts_multibyte_and_escaped_messages_exactly() -> None:
    endpoint = ServerEndpoint(TextService())
    for message in ("\u00e9\u4e2d" * 200, '"\\\n' * 150, "x" * 512):
        reply = encode_reply(Reply.error("id-1", 7, "INVALID_ARGUMENT", message))
        for budget in range(60, len(reply), 37):
            fitted = endpoint.limit_reply(reply, budget)
            if fitted is None:
                continue
            assert len(fitted) <= budget
            # Tight: within one character's encoding (at most 6 bytes, \u001f).
            assert len(fitted) > budget - 6
            decoded = decode_reply(fitted)
            assert (decoded.id, decoded.attempt) == ("id-1", 7)
            assert message.startswith(decoded.error_message or "")


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_no_reply_to_random_bytes_exceeds_the_budget(data: bytes) -> None:
    endpoint = ServerEndpoint(TextService())
    reply = endpoint.handle(data, 0.0, budget=FACTOR * len(data))
    assert reply is None or len(reply) <= FACTOR * len(data)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=150)
@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz!-0123456789", min_size=1, max_size=64),
    st.sampled_from(["text.convert", "text.nope", "bank.deposit", "numbers.check"]),
    st.dictionaries(st.text(max_size=8), _json, max_size=4),
)
def test_no_reply_to_a_well_formed_request_exceeds_the_budget(
    req_id: str, op: str, args: dict[str, Any]
) -> None:
    endpoint = ServerEndpoint(TextService())
    data = request(op, args, req_id)
    reply = endpoint.handle(data, 0.0, budget=FACTOR * len(data))
    assert reply is not None and len(reply) <= FACTOR * len(data)


# -- bad input changes nothing ---------------------------------------------


_amount = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=10**9 + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
_bank_args = st.one_of(
    st.fixed_dictionaries({"token": st.text(max_size=40), "amount": _amount}),
    st.fixed_dictionaries({"token": st.text(max_size=40), "amount": st.integers(1, 10**9)}),
    st.dictionaries(st.sampled_from(["token", "amount", "account", "pin", "x"]), _json),
)


def test_hostile_bank_requests_change_nothing(tmp_path: Path) -> None:
    with Ledger(str(tmp_path / "b.sqlite3"), scrypt_n=2**4) as ledger:
        endpoint = ServerEndpoint(BankService(ledger), Semantics.EXACTLY_ONCE)
        token, _ = ledger.login(3, "1234", 0.0)
        total = ledger.total_balance()

        @settings(max_examples=200)
        @given(
            st.sampled_from(["bank.deposit", "bank.withdraw", "bank.balance", "bank.transfer"]),
            _bank_args,
            st.booleans(),
        )
        def check(op: str, args: dict[str, Any], real_token: bool) -> None:
            amount = args.get("amount")
            valid = type(amount) is int and 1 <= amount <= 10**9
            if real_token and "amount" in args and not valid:
                args = {**args, "token": token}  # a valid session, a bad amount
            reply = decode_reply(endpoint.handle(request(op, args), 1.0) or b"")
            if reply.status is Status.OK:
                assert op == "bank.balance"  # only a read can succeed without a token
            else:
                assert reply.error_code in {
                    "INVALID_ARGUMENT",
                    "UNAUTHENTICATED",
                    "UNKNOWN_OPERATION",
                }

        check()
        assert ledger.applications() == {}
        assert ledger.total_balance() == total
        assert ledger.integrity_check() == "ok"


# -- dispatch and ServerContext ----------------------------------------------


class RecordingPool(concurrent.futures.ThreadPoolExecutor):
    """A real pool that counts what it was given."""

    def __init__(self) -> None:
        super().__init__(2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class GateService:
    """A blocking service whose calls wait until the test opens the gate."""

    name = "gate"
    blocking_ops = frozenset({"gate.go"})

    def __init__(self) -> None:
        self.gate = threading.Event()

    def blocks(self, op: str, args: Mapping[str, Any]) -> bool:
        return op in self.blocking_ops

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        self.gate.wait(10.0)
        return {"op": op}


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_malformed_input_never_reaches_the_worker_pool() -> None:
    async def run() -> None:
        with RecordingPool() as pool:
            service = GateService()
            service.gate.set()
            endpoint = ServerEndpoint(service)
            replies: list[bytes] = []
            done: list[int] = []
            for data in (b"garbage", raw_request(b"\xff\xfe"), raw_request(b'{"id":"x"}')):
                ServerContext(endpoint, pool=pool).execute(
                    data, replies.append, on_done=lambda: done.append(1)
                )
            assert pool.submitted == 0 and len(done) == 3
            assert len(replies) == 1  # the MALFORMED answer to the one with an id
            ServerContext(endpoint, pool=pool).execute(request("gate.go", {}), replies.append)
            await eventually(lambda: len(replies) == 2)
            assert pool.submitted == 1

    asyncio.run(run())


def test_a_request_run_on_the_loop_does_not_ask_for_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """get_running_loop() costs a getpid() syscall (strace -c: one per bank or
    numbers request, before): only a request going to the pool may call it."""

    async def run() -> None:
        calls: list[int] = []
        real = asyncio.get_running_loop

        def counting() -> asyncio.AbstractEventLoop:
            calls.append(1)
            return real()

        with RecordingPool() as pool:
            service = GateService()
            service.gate.set()
            endpoint = ServerEndpoint(service)
            replies: list[bytes] = []
            monkeypatch.setattr(asyncio, "get_running_loop", counting)
            ServerContext(endpoint, pool=pool).execute(request("gate.stay", {}), replies.append)
            assert len(replies) == 1 and calls == [] and pool.submitted == 0
            ServerContext(endpoint, pool=pool).execute(request("gate.go", {}), replies.append)
            assert calls == [1] and pool.submitted == 1
            monkeypatch.undo()
            await eventually(lambda: len(replies) == 2)

    asyncio.run(run())


@pytest.mark.parametrize("shared", [False, True])
def test_only_operations_that_may_block_reach_the_worker_pool(tmp_path: Path, shared: bool) -> None:
    async def run() -> None:
        with Ledger(str(tmp_path / "l.sqlite3"), scrypt_n=2) as ledger, RecordingPool() as pool:
            bank = BankService(ledger, ledger_shared=shared)
            ctx = ServerContext(ServerEndpoint(bank, Semantics.EXACTLY_ONCE), pool=pool)
            replies: list[Reply] = []

            def respond(data: bytes) -> None:
                replies.append(decode_reply(data))

            ctx.execute(request("bank.login", {"account": 1, "pin": "1234"}, "l1"), respond)
            await eventually(lambda: len(replies) == 1)
            assert replies[0].result is not None
            token = replies[0].result["token"]
            ctx.execute(request("bank.deposit", {"token": token, "amount": 5}, "d1"), respond)
            ctx.execute(request("bank.balance", {"token": token}, "b1"), respond)
            await eventually(lambda: len(replies) == 3)
            assert [r.status for r in replies] == [Status.OK] * 3
            assert replies[2].result == {"account": 1, "balance": 10005}
            # login hashes with scrypt: always a worker's job. The ledger calls
            # run on the loop unless other processes may hold the file's lock.
            assert pool.submitted == (3 if shared else 1)
            assert ctx.in_flight == 0

    asyncio.run(run())


def test_server_limits_are_validated() -> None:
    for bad in (
        {"max_connections": 0},
        {"max_in_flight": 0},
        {"frame_timeout": float("nan")},
        {"idle_timeout": -1.0},
        {"amplification_factor": 0.5},
    ):
        with pytest.raises(ValueError):
            ServerLimits(**bad)


# -- the TCP connection over a fake transport --------------------------------


class FakeTransport(asyncio.Transport):
    """Records what the protocol does to its transport; no socket behind it."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written: list[bytes] = []
        self.closing = False
        self.reading = True
        self.pauses = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self.abort()

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True


def connect(ctx: ServerContext) -> tuple[_ServerConnection, FakeTransport]:
    connection = _ServerConnection(ctx, None)
    transport = FakeTransport(connection)
    connection.connection_made(transport)
    return connection, transport


def frames(count: int, op: str = "gate.go", prefix: str = "r") -> bytes:
    return b"".join(frame(request(op, {}, f"{prefix}{i}")) for i in range(count))


@contextmanager
def gated_server(limits: ServerLimits) -> Iterator[tuple[GateService, ServerContext]]:
    """A server whose requests wait in a worker pool until ``service.gate`` is set."""
    service = GateService()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        yield service, ServerContext(ServerEndpoint(service), pool=pool, limits=limits)


def test_one_connection_pipelining_is_capped_and_paused() -> None:
    async def run() -> None:
        with gated_server(ServerLimits(max_in_flight_per_connection=8)) as (service, ctx):
            connection, transport = connect(ctx)
            connection.data_received(frames(200))
            assert connection.in_flight == 8 and ctx.in_flight == 8
            assert not transport.reading  # the peer is pushed back by TCP itself
            service.gate.set()
            await eventually(lambda: len(transport.written) == 200)
            assert transport.reading and connection.in_flight == 0
            assert ctx.peak_in_flight == 8
            ctx_replies = {decode_reply(w[4:]).id for w in transport.written}
            assert ctx_replies == {f"r{i}" for i in range(200)}

    asyncio.run(run())


def test_server_wide_cap_parks_connections_and_resumes_them() -> None:
    async def run() -> None:
        with gated_server(ServerLimits(max_in_flight_per_connection=8, max_in_flight=5)) as (
            service,
            ctx,
        ):
            (c1, t1), (c2, t2) = connect(ctx), connect(ctx)
            c1.data_received(frames(20, prefix="a"))
            c2.data_received(frames(20, prefix="b"))
            assert ctx.in_flight == 5 and not t1.reading and not t2.reading
            service.gate.set()
            await eventually(lambda: len(t1.written) == 20 and len(t2.written) == 20)
            assert ctx.peak_in_flight == 5 and t1.reading and t2.reading

    asyncio.run(run())


def test_a_peer_that_leaves_replies_unread_is_not_read_either() -> None:
    async def run() -> None:
        ctx = ServerContext(ServerEndpoint(TextService()))
        connection, transport = connect(ctx)
        connection.pause_writing()  # the transport's write buffer is full
        data = b"".join(frame(request("text.convert", {"text": "x"}, f"t{i}")) for i in range(50))
        connection.data_received(data)
        assert transport.written == [] and not transport.reading
        connection.resume_writing()
        assert len(transport.written) == 50 and transport.reading

    asyncio.run(run())


def test_inline_service_with_thousands_of_frames_does_not_recurse() -> None:
    async def run() -> None:
        ctx = ServerContext(ServerEndpoint(TextService()))
        connection, transport = connect(ctx)
        connection.pause_writing()
        one = frame(request("text.convert", {"text": ""}, "t"))
        connection.data_received(one * 5000)
        connection.resume_writing()  # drains all 5000 in one loop, no recursion
        assert len(transport.written) == 5000

    asyncio.run(run())


def test_slowloris_is_closed_by_the_frame_timeout_from_the_frames_start() -> None:
    async def run() -> None:
        limits = ServerLimits(frame_timeout=0.3, idle_timeout=60.0)
        ctx = ServerContext(ServerEndpoint(TextService()), limits=limits)
        connection, transport = connect(ctx)
        started = time.monotonic()
        connection.data_received(b"\x00\x00\x01\x00")  # a 256-byte frame begins
        while not transport.closing and time.monotonic() - started < 3.0:
            connection.data_received(b"x")  # one byte every 50 ms: never idle
            await asyncio.sleep(0.05)
        assert transport.closing
        assert 0.25 <= time.monotonic() - started < 1.0
        assert ctx.endpoint.counters["closed_stalled_frame"] == 1
        await eventually(lambda: not ctx.connections)  # released

    asyncio.run(run())


def test_steady_complete_frames_are_not_a_stall_but_silence_is_idle() -> None:
    async def run() -> None:
        limits = ServerLimits(frame_timeout=0.2, idle_timeout=0.4)
        ctx = ServerContext(ServerEndpoint(TextService()), limits=limits)
        connection, transport = connect(ctx)
        message = frame(request("text.convert", {"text": "hi"}))
        for _ in range(6):  # 0.3 s of complete frames, each read ending mid-frame
            connection.data_received(message + message[:3])
            await asyncio.sleep(0.05)
            connection.data_received(message[3:])
        assert not transport.closing and len(transport.written) == 12
        await eventually(lambda: transport.closing, timeout=2.0)
        assert ctx.endpoint.counters["closed_idle"] == 1
        assert ctx.endpoint.counters["closed_stalled_frame"] == 0

    asyncio.run(run())


def test_connections_beyond_the_limit_are_refused_and_counted() -> None:
    async def run() -> None:
        ctx = ServerContext(ServerEndpoint(TextService()), limits=ServerLimits(max_connections=3))
        pairs = [connect(ctx) for _ in range(5)]
        assert [t.closing for _, t in pairs] == [False, False, False, True, True]
        assert ctx.endpoint.counters["refused_connections"] == 2
        pairs[0][1].abort()
        await eventually(lambda: len(ctx.connections) == 2)
        assert not connect(ctx)[1].closing  # a freed slot admits a newcomer

    asyncio.run(run())


def test_error_reply_sizes_without_budget_stay_within_the_message_limit() -> None:
    endpoint = ServerEndpoint(TextService())
    data = request("text.convert", {"text": "\u0390" * 4000})
    reply = endpoint.handle(data, 0.0)
    assert reply is not None and len(reply) <= MAX_MESSAGE_SIZE


# -- one whole frame per read: the path that skips the decoder's queue ---------


def text_frames(count: int) -> list[bytes]:
    return [frame(request("text.convert", {"text": f"x{i}"}, f"t{i}")) for i in range(count)]


def replies_of(transport: FakeTransport) -> list[tuple[str, Any]]:
    decoded = [decode_reply(w[4:]) for w in transport.written]
    return [(r.id, r.result) for r in decoded]


@pytest.mark.parametrize("split", ["one read each", "all in one read", "byte by byte", "ragged"])
def test_replies_do_not_depend_on_how_reads_split_the_stream(split: str) -> None:
    async def run() -> list[tuple[str, Any]]:
        connection, transport = connect(ServerContext(ServerEndpoint(TextService())))
        parts = text_frames(6)
        stream = b"".join(parts)
        if split == "one read each":
            reads = parts
        elif split == "all in one read":
            reads = [stream]
        elif split == "byte by byte":
            reads = [stream[i : i + 1] for i in range(len(stream))]
        else:  # a whole frame right after a partial one, then the rest
            reads = [parts[0][:7], parts[0][7:] + parts[1], parts[2], parts[3][:2]]
            reads += [parts[3][2:], parts[4] + parts[5]]
        for data in reads:
            connection.data_received(data)
        return replies_of(transport)

    got = asyncio.run(run())
    assert got == [(f"t{i}", {"lower": f"x{i}", "upper": f"X{i}"}) for i in range(6)]


def test_single_frame_reads_respect_the_connection_cap() -> None:
    async def run() -> None:
        with gated_server(ServerLimits(max_in_flight_per_connection=2)) as (service, ctx):
            connection, transport = connect(ctx)
            for i in range(5):  # a read may still arrive after pause_reading
                connection.data_received(frame(request("gate.go", {}, f"g{i}")))
            assert connection.in_flight == 2 and not transport.reading
            assert ctx.peak_in_flight == 2
            service.gate.set()
            await eventually(lambda: len(transport.written) == 5)
            assert transport.reading and connection.in_flight == 0
            assert sorted(decode_reply(w[4:]).id for w in transport.written) == [
                f"g{i}" for i in range(5)
            ]

    asyncio.run(run())


def test_a_single_frame_read_waits_while_the_peer_reads_no_replies() -> None:
    async def run() -> None:
        connection, transport = connect(ServerContext(ServerEndpoint(TextService())))
        connection.pause_writing()
        for data in text_frames(3):
            connection.data_received(data)
        assert transport.written == [] and not transport.reading
        connection.resume_writing()
        assert [r[0] for r in replies_of(transport)] == ["t0", "t1", "t2"]

    asyncio.run(run())


def passthrough_links_context() -> ServerContext:
    """Every peer gets fault links whose probabilities are all zero (serve --fault-layer)."""
    return ServerContext(ServerEndpoint(TextService()), faults=LinkFaults())


def test_zero_probability_links_count_every_message() -> None:
    async def run() -> None:
        connection, transport = connect(passthrough_links_context())
        reads = text_frames(4)
        for data in [reads[0], reads[1] + reads[2], reads[3]]:
            connection.data_received(data)
        assert [r[0] for r in replies_of(transport)] == ["t0", "t1", "t2", "t3"]
        links = connection.links
        assert links.request is not None and links.reply is not None
        assert links.request.passthrough
        assert links.request.counters["messages"] == 4
        assert links.reply.counters["messages"] == 4

    asyncio.run(run())


class FakeDatagramTransport(asyncio.DatagramTransport):
    """Records what a UDP server sends, to whom; no socket behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        self.sent.append((bytes(data), addr))

    def is_closing(self) -> bool:
        return False


def test_zero_probability_links_count_every_datagram_per_peer() -> None:
    from transports.aio.udp import _ServerProtocol

    ctx = passthrough_links_context()
    server = _ServerProtocol(ctx)
    transport = FakeDatagramTransport()
    server.connection_made(transport)
    peers = [("127.0.0.1", 5001), ("127.0.0.1", 5002), ("127.0.0.1", 5001)]
    for i, peer in enumerate(peers):
        server.datagram_received(request("text.convert", {"text": f"x{i}"}, f"u{i}"), peer)
    assert [(decode_reply(data).id, addr) for data, addr in transport.sent] == [
        ("u0", peers[0]),
        ("u1", peers[1]),
        ("u2", peers[2]),
    ]
    first, second = (server._peer_links[p] for p in peers[:2])
    assert all(
        link is not None and link.passthrough
        for links in (first, second)
        for link in (links.request, links.reply)
    )
    counts = [
        (links.request.counters["messages"], links.reply.counters["messages"])
        for links in (first, second)
        if links.request is not None and links.reply is not None
    ]
    assert counts == [(2, 2), (1, 1)]
