"""The server as a target: hostile input, overload, slow senders, and the bank's
authorization, over real loopback sockets on both transports.

Servers under load run as real processes (``python -m services serve ...``),
so their memory (VmRSS) and file descriptors can be measured from /proc and
their counters read from the ``[STOPPED]`` line. Every loop is bounded in
count and every wait in time. Run with ``-s`` to see the measured figures
(docs/SECURITY.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.bank import BankService
from services.ledger import Ledger
from services.text import TextService
from tests.integration.servers import Served, client_for, running, serve_process
from transports.aio.client import RpcClient, open_channel
from transports.aio.driver import ServerLimits
from transports.call import Outcome, RetrySettings
from transports.framing import frame
from transports.retry import RetryPolicy
from transports.semantics import Semantics
from transports.wire import (
    MAX_MESSAGE_SIZE,
    Reply,
    Request,
    WireError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

#: Real servers under hostile traffic, several as processes: ~9 s for the module.
pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
OPENING_TOTAL = 30_000  # the three demo accounts, 10,000 each
FUZZ_TARGET = 3  # the account whose real token the fuzz abuses
RSS_BOUND_KIB = 50 * 1024  # allowed growth under load: generous on purpose
FACTOR = ServerLimits.amplification_factor
OVERSIZE = "oversize datagram (16385..65000 bytes)"

# -- a server process -----------------------------------------------------------


@contextmanager
def served(service: str, transport: str, *args: str) -> Iterator[Served]:
    """``python -m services serve`` on a free loopback port; counters after exit."""
    with serve_process(service, "--transport", transport, *args) as server:
        yield server


def settings(timeout: float, attempts: int) -> RetrySettings:
    return RetrySettings(RetryPolicy.from_name("fixed", timeout=timeout), max_attempts=attempts)


def rpc(transport: str, port: int, timeout: float = 2.0, attempts: int = 3) -> RpcClient:
    return RpcClient(open_channel(transport, HOST, port), settings(timeout, attempts))


async def login(client: RpcClient, account: int) -> str:
    result = await client.call("bank.login", {"account": account, "pin": "1234"})
    assert result.outcome is Outcome.OK, result
    return str(result.result["token"])


# -- hostile messages -----------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    case: str  # the report row
    data: bytes  # one datagram / one frame payload
    expect: str | None  # the error code of the reply; None: dropped unanswered


def envelope(body: bytes, kind: bytes = b"Q") -> bytes:
    """A message with a valid checksum around any body."""
    head = b"RT\x01" + kind
    return head + struct.pack(">I", zlib.crc32(head + body)) + body


def body(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def wire_fate(data: bytes) -> str | None:
    """What the protocol (PROTOCOL.md section 5.1) says happens to ``data``."""
    try:
        decode_request(data)
    except WireError as err:
        return "MALFORMED" if err.answerable else None
    raise AssertionError(f"a hostile message decoded cleanly: {data[:80]!r}")


BAD_AMOUNTS: list[Any] = [
    0, -1, -5, -(10**9), -(10**18), 10**9 + 1, 10**12, 10**18, 2**63, 2**64, 10**100,
    1.5, 0.1, -0.5, 1e308, 1e-300, 5.0, "1", "-5", "1e3", "", "NaN", "Infinity",
    "abc", None, True, False, [5], {"v": 5},
]  # fmt: skip
BAD_TYPES: list[Any] = ["x", 5, 1.5, None, True, [], {}]
NOT_INTEGERS = [t for t in BAD_TYPES if t != 5]
INVALID_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]


def hostile_messages(rng: random.Random, token: str) -> list[Hostile]:
    """About 10,500 malformed or unauthorized requests, each with its expected fate.

    Ids are unique (``fz-N``), so any reply can be matched to its message.
    """
    out: list[Hostile] = []
    n = iter(range(10**9))

    def rid() -> str:
        return f"fz-{next(n)}"

    def valid() -> bytes:
        args = {"token": token, "amount": rng.randint(1, 10**6)}
        return encode_request(Request(rid(), rng.choice(["bank.deposit", "bank.withdraw"]), args))

    def add(case: str, count: int, make: Any, expect: str | None = "wire") -> None:
        for _ in range(count):
            data = make()
            out.append(Hostile(case, data, wire_fate(data) if expect == "wire" else expect))

    def request(op: str, args: Any) -> bytes:
        return envelope(body(args=args, attempt=1, id=rid(), op=op))

    def random_bytes() -> bytes:
        data = rng.randbytes(rng.randint(1, 600))
        return b"X" + data[1:] if data.startswith(b"R") else data

    def flip() -> bytes:
        data = bytearray(valid())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    def version() -> bytes:
        data = bytearray(valid())
        data[2] = rng.choice([0, 2, 0x7F, 0xFF])
        return bytes(data)

    def bad_json() -> bytes:
        i = rid()
        return envelope(
            rng.choice(
                [
                    b"",
                    b"{",
                    b"[]",
                    b"42",
                    b'"s"',
                    b"null",
                    b"{'id': 1}",
                    f'{{"id":"{i}",}}'.encode(),
                    rng.randbytes(40).hex().encode(),
                    f'{{"id":"{i}","op":"bank.deposit","args":{{"amount":NaN}},"attempt":1}}'.encode(),
                    f'{{"id":"{i}","id":"x","op":"bank.balance","args":{{}},"attempt":1}}'.encode(),
                    f'{{"id":"{i}","args":{{"amount":{"9" * 5000}}}}}'.encode(),
                ]
            )
        )

    def bad_envelope() -> bytes:
        fields: dict[str, Any] = {
            "id": rid(),
            "op": "bank.deposit",
            "args": {"token": token, "amount": 5},
            "attempt": 1,
        }
        how = rng.randrange(6)
        if how == 0:
            del fields[rng.choice(["op", "args", "attempt"])]
        elif how == 1:
            fields[rng.choice(["token", "amount", "account", "ID"])] = 1
        elif how == 2:
            fields["attempt"] = rng.choice([0, -1, "1", 1.0, True, 10**7, None])
        elif how == 3:
            fields["op"] = rng.choice([5, "", "BANK.DEPOSIT", "bank..deposit", "x" * 65, None])
        elif how == 4:
            fields["args"] = rng.choice([[], "x", 5, None])
        else:
            nested: Any = 1
            for _ in range(40):
                nested = [nested]
            fields["args"] = {"token": token, "amount": nested}
        return envelope(body(**fields))

    def lone_surrogate() -> bytes:
        return envelope(f'{{"args":{{"token":"\\ud800"}},"attempt":1,"id":"{rid()}",'
                        f'"op":"bank.balance"}}'.encode())  # fmt: skip

    def bad_id() -> bytes:
        bad = rng.choice(["", "a b", "x" * 65, 5, None, "\u00e9", "tab\t"])
        return envelope(body(args={}, attempt=1, id=bad, op="bank.balance"))

    def garbage_token() -> str:
        return rng.choice(
            [
                "",
                "x",
                rng.randbytes(24).hex()[:32],
                token[:-1] + ("A" if token[-1] != "A" else "B"),
                token + "x",
                "a" * 128,
                token.upper(),
            ]
        )

    # Wire layer: nothing in these can be trusted, not even an id: dropped.
    add("random bytes", 1400, random_bytes)
    add("valid message truncated", 700, lambda: (v := valid())[: rng.randint(1, len(v) - 1)])
    add("valid message extended", 400, lambda: valid() + rng.randbytes(rng.randint(1, 50)))
    add("valid message, one bit flipped", 700, flip)
    add("unsupported version", 200, version)
    add("unknown kind byte (valid CRC)", 200, lambda: envelope(body(id=rid()), b"X"))
    add(
        "a reply sent to the server",
        200,
        lambda: encode_reply(Reply.ok(rid(), 1, {"balance": 10**12})),
    )
    add(
        "invalid UTF-8 body (valid CRC)",
        500,
        lambda: envelope(
            b'{"id":"' + rid().encode() + b'","op":"bank.balance","args":{"token":"'
            + rng.choice(INVALID_UTF8) + b'"},"attempt":1}'
        ),
    )  # fmt: skip
    add("not JSON / NaN / duplicate key / 5000-digit int", 800, bad_json)
    add("invalid id", 300, bad_id)
    # Envelope: the id is valid, so the client is told MALFORMED.
    add("invalid envelope, valid id", 1000, bad_envelope)
    add("lone surrogate in args", 100, lone_surrogate)
    # Service layer: well-formed envelopes with bad operations and arguments.
    ops = ["bank.transfer", "bank.admin", "text.convert", "numbers.check", "bank", "a.b.c"]
    add(
        "unknown operation",
        500,
        lambda: request(rng.choice(ops), {"token": token}),
        "UNKNOWN_OPERATION",
    )

    def missing() -> bytes:
        op, args = rng.choice(
            [
                ("bank.deposit", {}),
                ("bank.deposit", {"token": token}),
                ("bank.withdraw", {"amount": 5}),
                ("bank.balance", {}),
                ("bank.login", {"account": FUZZ_TARGET}),
                ("bank.login", {"pin": "1234"}),
            ]
        )
        return request(op, args)

    def wrong_type() -> bytes:
        op, args = rng.choice(
            [
                ("bank.deposit", {"token": token, "amount": rng.choice(NOT_INTEGERS)}),
                ("bank.withdraw", {"token": rng.choice(BAD_TYPES[1:]), "amount": 5}),
                ("bank.balance", {"token": rng.choice(BAD_TYPES[1:])}),
                ("bank.login", {"account": rng.choice(["1", 1.5, True, None]), "pin": "1234"}),
                ("bank.login", {"account": FUZZ_TARGET, "pin": rng.choice([1234, None, []])}),
                ("bank.deposit", {"token": token, "amount": 5, "account": 1}),
                ("bank.withdraw", {"token": token, "amount": 5, "to": 2}),
            ]
        )  # fmt: skip
        return request(op, args)

    def bad_amount() -> bytes:
        who = token if rng.random() < 0.8 else garbage_token()  # amounts are checked first
        op = rng.choice(["bank.deposit", "bank.withdraw"])
        return request(op, {"token": who, "amount": rng.choice(BAD_AMOUNTS)})

    def forged_token() -> bytes:
        op = rng.choice(["bank.deposit", "bank.withdraw", "bank.balance"])
        args: dict[str, Any] = {"token": garbage_token()}
        if op != "bank.balance":
            args["amount"] = rng.randint(1, 10**9)
        return request(op, args)

    def bad_login() -> bytes:
        account, pin = rng.choice(
            [(0, "1234"), (-1, "1234"), (2**63, "1234"), (10**30, "1234"),
             (FUZZ_TARGET, ""), (FUZZ_TARGET, "x" * 33)]
        )  # fmt: skip
        return request("bank.login", {"account": account, "pin": pin})

    add("missing fields", 500, missing, "INVALID_ARGUMENT")
    add("wrong JSON types / extra fields", 800, wrong_type, "INVALID_ARGUMENT")
    add("bad amounts (neg, 0, fractional, huge, non-numeric)", 1200, bad_amount, "INVALID_ARGUMENT")
    add("bad login input (no PIN check run)", 400, bad_login, "INVALID_ARGUMENT")
    add("forged or garbage token", 600, forged_token, "UNAUTHENTICATED")
    return out


def expected_counters(messages: list[Hostile]) -> Counter[str]:
    """The server counters the messages should move (PROTOCOL.md 5.1, endpoint)."""
    counted: Counter[str] = Counter()
    for h in messages:
        try:
            decode_request(h.data)
        except WireError as err:
            counted[f"rejected_{err.code.lower()}"] += 1
            continue
        assert h.expect is not None
        counted[f"error_{h.expect.lower()}"] += 1
    return counted


@dataclass
class FuzzReport:
    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)


def check_replies(messages: list[Hostile], replies: dict[str, list[Reply]]) -> FuzzReport:
    """Every answerable message got exactly its one typed error; no other got any."""
    report = FuzzReport()
    for h in messages:
        report.sent[h.case] += 1
        if h.expect is None:
            continue
        req_id = decode_request_id(h.data)
        got = replies.get(req_id, [])
        assert len(got) == 1, f"{h.case}: {len(got)} replies to {req_id}"
        assert got[0].error_code == h.expect, (h.case, got[0], h.data[:200])
        report.answered[h.case] += 1
    unexpected = {i for i in replies if i.startswith("fz-")} - {
        decode_request_id(h.data) for h in messages if h.expect is not None
    }
    assert not unexpected, f"replies to messages that must be dropped: {sorted(unexpected)[:5]}"
    return report


def decode_request_id(data: bytes) -> str:
    try:
        return decode_request(data).id
    except WireError as err:
        assert err.request_id is not None
        return err.request_id


# -- the fuzz test --------------------------------------------------------------


async def fuzz_udp(port: int, messages: list[Hostile]) -> tuple[dict[str, list[Reply]], float, int]:
    """Send every message as a datagram; returns the replies by id, the largest
    reply/request size ratio and the number of probes. Batches end with a probe
    whose reply shows the server has read the batch, so that its socket buffer
    never overflows (a datagram lost there would spoil the counts)."""
    loop = asyncio.get_running_loop()
    replies: dict[str, list[Reply]] = {}
    sizes: dict[str, int] = {}
    ratio = 0.0
    arrived = asyncio.Event()

    class Collector(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            nonlocal ratio
            reply = decode_reply(data)
            replies.setdefault(reply.id, []).append(reply)
            if reply.id in sizes:
                ratio = max(ratio, len(data) / sizes[reply.id])
            arrived.set()

    transport, _ = await loop.create_datagram_endpoint(Collector, remote_addr=(HOST, port))
    try:
        batch_bytes, probes = 0, 0
        for i, h in enumerate(messages):
            if h.expect is not None:
                sizes[decode_request_id(h.data)] = len(h.data)
            if h.data:
                transport.sendto(h.data)
            else:  # asyncio silently skips empty datagrams: a plain socket sends one
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                    raw.sendto(b"", (HOST, port))
            batch_bytes += len(h.data) + 64
            if batch_bytes > 48_000 or i % 48 == 47 or i == len(messages) - 1:
                probes += 1
                probe = Request(f"sync-{probes}", "bank.balance", {"token": "sync"})
                transport.sendto(encode_request(probe))
                await wait_for_reply(replies, probe.id, arrived)
                batch_bytes = 0
        # Replies run in the worker pool, so some may trail the last probe.
        want = {decode_request_id(h.data) for h in messages if h.expect is not None}
        async with asyncio.timeout(10):
            while not want.issubset(replies):
                arrived.clear()
                await arrived.wait()
    finally:
        transport.close()
    return replies, ratio, probes


async def wait_for_reply(replies: dict[str, list[Reply]], rid: str, arrived: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        while rid not in replies:
            arrived.clear()
            await arrived.wait()


BAD_HEADERS = [b"\x00\x00\x00\x00", struct.pack(">I", MAX_MESSAGE_SIZE + 1),
               b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff"]  # fmt: skip


async def fuzz_tcp(port: int, messages: list[Hostile], batch: int = 200) -> dict[str, list[Reply]]:
    """Pipeline batches of frames over a connection each; every batch ends with a
    probe (its reply shows the server has read the batch: complete frames that
    share a read with a bad header are discarded with the connection) and then
    a bad length header (0, or claiming up to 4 GiB), which must close it."""
    replies: dict[str, list[Reply]] = {}
    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]
        probe = Request(f"sync-{start}", "bank.balance", {"token": "sync"})
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"".join(frame(h.data) for h in chunk) + frame(encode_request(probe)))
        async with asyncio.timeout(10):
            while probe.id not in replies:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                reply = decode_reply(await reader.readexactly(length))
                replies.setdefault(reply.id, []).append(reply)
        want = {decode_request_id(h.data) for h in chunk if h.expect is not None}
        async with asyncio.timeout(10):
            while not want.issubset(replies):  # pool replies may trail the probe's
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                reply = decode_reply(await reader.readexactly(length))
                replies.setdefault(reply.id, []).append(reply)
        writer.write(BAD_HEADERS[(start // batch) % len(BAD_HEADERS)])
        await assert_closed_by_server(reader, within=5.0)
        writer.close()
    return replies


async def assert_closed_by_server(reader: asyncio.StreamReader, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            assert await reader.read(65536) == b"", "server sent data instead of closing"
    except ConnectionResetError:
        pass  # abort() closes with an RST: also a close


async def correct_session(transport: str, port: int) -> list[str]:
    """A well-behaved client after the storm: every answer right. Returns its ids."""
    client = rpc(transport, port)
    try:
        token = await login(client, 1)
        balance = await client.call("bank.balance", {"token": token})
        assert balance.result == {"account": 1, "balance": 10_000}
        deposit = await client.call("bank.deposit", {"token": token, "amount": 250})
        assert deposit.result == {"account": 1, "balance": 10_250}
        withdraw = await client.call("bank.withdraw", {"token": token, "amount": 100})
        assert withdraw.result == {"account": 1, "balance": 10_150}
        refused = await client.call("bank.withdraw", {"token": token, "amount": 10**6})
        assert refused.error_code == "INSUFFICIENT_FUNDS"
        return [deposit.request.id, withdraw.request.id]
    finally:
        await client.close()


def test_fuzz_storm_changes_nothing_and_the_server_keeps_serving(
    transport: str, tmp_path: Path
) -> None:
    db = str(tmp_path / "bank.sqlite3")
    rng = random.Random(20240601)
    with served("bank", transport, "--db", db) as server:
        rss: dict[str, int] = {}

        async def storm() -> tuple[list[Hostile], dict[str, list[Reply]], float, int, list[str]]:
            warm = rpc(transport, server.port)
            token = await login(warm, FUZZ_TARGET)
            await warm.close()
            rss["before"] = server.status_kib("VmRSS")
            messages = hostile_messages(rng, token)
            if transport == "udp":
                extra = [Hostile("empty datagram", b"", None)] * 20 + [
                    Hostile(OVERSIZE, rng.randbytes(size), None)
                    for size in (MAX_MESSAGE_SIZE + 1, 20_000, 40_000, 65_000) * 8
                ]
                messages += extra
                replies, ratio, probes = await fuzz_udp(server.port, messages)
            else:
                replies, ratio = await fuzz_tcp(server.port, messages), 0.0
                probes = -(-len(messages) // 200)
            rss["after fuzz"] = server.status_kib("VmRSS")
            legit = await correct_session(transport, server.port)
            return messages, replies, ratio, probes, legit

        started = time.monotonic()
        messages, replies, ratio, probes, legit_ids = asyncio.run(storm())
        elapsed = time.monotonic() - started
        rss["after session"], rss["peak"] = server.status_kib("VmRSS"), server.status_kib("VmHWM")

    report = check_replies(messages, replies)
    counters = server.counters
    expected = expected_counters([h for h in messages if h.case != OVERSIZE])
    expected["error_unauthenticated"] += probes  # each probe: a balance with a bad token
    for key, count in expected.items():
        assert counters[key] == count, (key, counters[key], count)
    if transport == "udp":
        assert counters["rejected_oversize_datagram"] == 32
        assert ratio <= FACTOR
    else:
        assert counters["rejected_framing"] == -(-len(messages) // 200)
    with Ledger(db) as ledger:
        applied = ledger.applications()
        assert set(applied) == set(legit_ids) and set(applied.values()) == {1}
        assert ledger.balance(FUZZ_TARGET) == 10_000  # the abused account: untouched
        assert ledger.total_balance() == OPENING_TOTAL + 250 - 100
        assert ledger.reconcile() == []
        assert ledger.integrity_check() == "ok"
    assert rss["after session"] - rss["before"] < RSS_BOUND_KIB
    print(
        f"\n[fuzz {transport}] {len(messages)} hostile messages in {elapsed:.1f} s; "
        f"answered {sum(report.answered.values())}, dropped "
        f"{len(messages) - sum(report.answered.values())}; "
        f"VmRSS KiB {rss}; "
        f"max reply/request ratio {ratio:.2f}; counters {dict(sorted(counters.items()))}"
    )
    for case, sent in report.sent.items():
        print(f"  {case}: sent {sent}, answered {report.answered[case]}")


# -- slow senders and floods ------------------------------------------------------


async def eventually(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def timed_calls(client: RpcClient, token: str, count: int) -> list[float]:
    """``count`` balance reads and deposits of 1; every answer checked."""
    latencies = []
    for k in range(count):
        started = time.monotonic()
        if k % 2:
            result = await client.call("bank.deposit", {"token": token, "amount": 1})
        else:
            result = await client.call("bank.balance", {"token": token})
        latencies.append(time.monotonic() - started)
        assert result.outcome is Outcome.OK, result
        assert result.result == {"account": 1, "balance": 10_000 + k // 2 + k % 2}
    return latencies


def test_stalled_tcp_connections_do_not_starve_a_normal_client(tmp_path: Path) -> None:
    stalls, dribblers, extra, frame_timeout = 300, 20, 5, 2.0
    args = ["--db", str(tmp_path / "b.sqlite3"), "--frame-timeout", str(frame_timeout)]
    args += ["--max-connections", str(stalls + 1)]  # the stalls and one normal client
    args += ["--max-connections-per-source", str(stalls + 1)]  # all from 127.0.0.1
    figures: dict[str, Any] = {}
    with served("bank", "tcp", *args) as server:

        async def scenario() -> None:
            client = rpc("tcp", server.port, attempts=1)
            token = await login(client, 1)
            base_fds, figures["rss before"] = server.fds(), server.status_kib("VmRSS")
            streams = [await asyncio.open_connection(HOST, server.port) for _ in range(stalls)]
            # Each starts a frame and never finishes it: half a length header,
            # a header and part of the body, or a 16 KiB frame dribbled a byte
            # at a time (slowloris: never idle, never complete).
            partials = [b"\x00\x00", struct.pack(">I", 100) + b"RT\x01Q", b"\x00\x00\x40\x00xx"]
            for i, (_, writer) in enumerate(streams):
                writer.write(partials[i % 3])
            opened = time.monotonic()

            async def dribble(writer: asyncio.StreamWriter) -> None:
                for _ in range(int(4 * (frame_timeout + 5))):  # bounded: 4 bytes a second
                    if writer.transport.is_closing():
                        return
                    writer.write(b"x")
                    await asyncio.sleep(0.25)

            slow = [w for i, (_, w) in enumerate(streams) if i % 3 == 2][:dribblers]
            tasks = [asyncio.create_task(dribble(w)) for w in slow]
            await eventually(lambda: server.fds() >= base_fds + stalls, timeout=5.0)
            latencies = await timed_calls(client, token, 20)
            # Full (stalls + our client): newcomers are closed at once.
            for _ in range(extra):
                reader, writer = await asyncio.open_connection(HOST, server.port)
                await assert_closed_by_server(reader, within=2.0)
                writer.close()
            # Still held: the requests above really ran beside 300 stalls.
            assert server.fds() >= base_fds + stalls, "stalls closed before the requests ran"
            figures["fds held"], figures["rss held"] = server.fds(), server.status_kib("VmRSS")
            figures["max latency ms"] = round(1000 * max(latencies), 1)
            assert max(latencies) < 1.0
            # The server closes every stalled connection by itself ...
            await asyncio.gather(
                *(assert_closed_by_server(r, within=frame_timeout + 5.0) for r, _ in streams)
            )
            figures["all closed after s"] = round(time.monotonic() - opened, 2)
            assert time.monotonic() - opened >= frame_timeout - 0.2
            await asyncio.gather(*tasks)
            # ... releases their descriptors (a few sqlite files may have opened) ...
            await eventually(lambda: server.fds() <= base_fds + 12, timeout=5.0)
            figures["fds after"], figures["fds before"] = server.fds(), base_fds
            # ... and has room again.
            newcomer = rpc("tcp", server.port, attempts=1)
            assert (await newcomer.call("bank.balance", {"token": token})).outcome is Outcome.OK
            for client_ in (client, newcomer):
                await client_.close()
            for _, writer in streams:
                writer.close()
            figures["rss after"], figures["rss peak"] = (
                server.status_kib("VmRSS"),
                server.status_kib("VmHWM"),
            )

        asyncio.run(scenario())
    assert server.counters["closed_stalled_frame"] == stalls
    assert server.counters["refused_connections"] == extra
    assert server.counters["rejected_framing"] == 0
    assert figures["rss after"] - figures["rss before"] < RSS_BOUND_KIB
    print(f"\n[stalls tcp] {figures}; counters {dict(sorted(server.counters.items()))}")


def test_udp_garbage_flood_does_not_starve_a_normal_client(tmp_path: Path) -> None:
    senders, rounds = 300, 20
    figures: dict[str, Any] = {}
    with served("bank", "udp", "--db", str(tmp_path / "b.sqlite3")) as server:

        async def scenario() -> None:
            client = rpc("udp", server.port, timeout=0.25, attempts=4)
            token = await login(client, 1)
            figures["rss before"] = server.status_kib("VmRSS")
            rng = random.Random(7)
            valid = encode_request(Request("flood", "bank.balance", {"token": token}))
            garbage = [
                b"RT\x01",  # a header cut short
                valid[: len(valid) // 2],  # half a request
                valid[:-1],  # all but one byte
                rng.randbytes(200),
                envelope(b'{"id":"flood"'),  # valid CRC, unfinished JSON
            ]
            sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(senders)]
            sent = 0

            async def flood() -> None:
                nonlocal sent
                for r in range(rounds):
                    for i, sock in enumerate(sockets):
                        try:
                            sock.sendto(garbage[(i + r) % len(garbage)], (HOST, server.port))
                            sent += 1
                        except BlockingIOError:
                            pass
                    await asyncio.sleep(0.005)

            for sock in sockets:
                sock.setblocking(False)
            try:
                flooding = asyncio.create_task(flood())
                latencies = await timed_calls(client, token, 20)
                await flooding
            finally:
                for sock in sockets:
                    sock.close()
            await client.close()
            figures["sent"], figures["max latency ms"] = sent, round(1000 * max(latencies), 1)
            assert max(latencies) < 1.0
            figures["rss after"] = server.status_kib("VmRSS")

        asyncio.run(scenario())
    counted = sum(v for k, v in server.counters.items() if k.startswith("rejected_"))
    figures["counted by server"] = counted
    assert 0 < counted <= figures["sent"]  # the kernel may drop some; nothing was answered
    assert figures["rss after"] - figures["rss before"] < RSS_BOUND_KIB
    print(f"\n[flood udp] {figures}; counters {dict(sorted(server.counters.items()))}")


def test_a_pipelining_client_is_held_to_the_in_flight_cap(ledger: Ledger) -> None:
    requests, cap = 3000, 16

    async def run() -> None:
        limits = ServerLimits(max_in_flight_per_connection=cap)
        async with running("tcp", BankService(ledger), Semantics.EXACTLY_ONCE, limits) as server:
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(
                b"".join(
                    frame(encode_request(Request(f"p{i}", "bank.balance", {"token": "nope"})))
                    for i in range(requests)
                )
            )
            await asyncio.sleep(0.3)  # not reading: replies pile up, requests must not
            assert 0 < server.context.peak_in_flight <= cap
            seen = set()
            async with asyncio.timeout(30):
                for _ in range(requests):
                    (length,) = struct.unpack(">I", await reader.readexactly(4))
                    reply = decode_reply(await reader.readexactly(length))
                    assert reply.error_code == "UNAUTHENTICATED"
                    seen.add(reply.id)
            assert len(seen) == requests
            assert server.context.peak_in_flight <= cap
            writer.close()

    asyncio.run(run())


# -- authorization over the wire ---------------------------------------------------


def test_the_token_alone_decides_the_account(transport: str, tmp_path: Path) -> None:
    ttl = 1.0
    with Ledger(str(tmp_path / "b.sqlite3"), scrypt_n=2**10, session_ttl=ttl) as ledger:

        async def run() -> None:
            service = BankService(ledger)
            async with running(transport, service, Semantics.EXACTLY_ONCE) as server:
                c = client_for(server)
                t1, t2 = await login(c, 1), await login(c, 2)

                async def call(op: str, **args: Any) -> tuple[str | None, dict[str, Any]]:
                    result = await c.call(op, args)
                    return result.error_code, result.result

                assert await call("bank.balance", token=t1) == (
                    None,
                    {"account": 1, "balance": 10_000},
                )
                assert await call("bank.deposit", token=t1, amount=5) == (
                    None,
                    {"account": 1, "balance": 10_005},
                )
                assert await call("bank.withdraw", token=t2, amount=7) == (
                    None,
                    {"account": 2, "balance": 9_993},
                )
                # There is no account field to point elsewhere: naming one is refused.
                for op in ("bank.deposit", "bank.withdraw"):
                    code, _ = await call(op, token=t1, amount=5, account=2)
                    assert code == "INVALID_ARGUMENT"
                code, _ = await call("bank.balance", token=t1, account=2)
                assert code == "INVALID_ARGUMENT"
                forged = [
                    "x",
                    secrets.token_urlsafe(24),
                    t2[:-1] + ("A" if t2[-1] != "A" else "B"),
                    t1.upper(),
                    t1 + t2,
                ]
                for token in forged:
                    for op, args in (("bank.balance", {}), ("bank.withdraw", {"amount": 1})):
                        code, _ = await call(op, token=token, **args)
                        assert code == "UNAUTHENTICATED", token
                assert (await call("bank.logout", token=t2))[0] is None
                assert (await call("bank.balance", token=t2))[0] == "UNAUTHENTICATED"
                # Unknown account and wrong PIN: one answer, so no enumeration.
                unknown = await c.call("bank.login", {"account": 99, "pin": "1234"})
                wrong = await c.call("bank.login", {"account": 2, "pin": "0000"})
                assert unknown.reply and wrong.reply
                assert (unknown.reply.error_code, unknown.reply.error_message) == (
                    wrong.reply.error_code,
                    wrong.reply.error_message,
                )
                # Sessions expire.
                t3 = await login(c, 3)
                await asyncio.sleep(ttl + 0.05)
                assert (await call("bank.balance", token=t3))[0] == "UNAUTHENTICATED"
                assert (await call("bank.deposit", token=t3, amount=1))[0] == "UNAUTHENTICATED"
                # Five wrong PINs lock the account (the fifth says so, and for how
                # long): then even the right PIN fails.
                for attempt in range(1, 6):
                    bad = await c.call("bank.login", {"account": 3, "pin": "0000"})
                    assert bad.error_code == ("ACCOUNT_LOCKED" if attempt == 5 else "AUTH_FAILED")
                locked = await c.call("bank.login", {"account": 3, "pin": "1234"})
                assert locked.error_code == "ACCOUNT_LOCKED"
                assert locked.reply and "locked for 30 s" in str(locked.reply.error_message)
                await c.close()

        asyncio.run(run())
        assert [balance for _, _, balance in ledger.accounts()] == [10_005, 9_993, 10_000]
        assert ledger.reconcile() == []


def test_concurrent_withdrawals_over_the_wire_never_overdraw(
    transport: str, ledger: Ledger
) -> None:
    clients, each, amount = 30, 3, 300  # 27,000 asked of 10,000

    async def withdrawer(client: RpcClient) -> list[str | None]:
        token = await login(client, 3)
        codes = []
        for _ in range(each):
            result = await client.call("bank.withdraw", {"token": token, "amount": amount})
            codes.append(result.error_code)
        await client.close()
        return codes

    async def run() -> list[str | None]:
        async with running(transport, BankService(ledger), Semantics.EXACTLY_ONCE) as server:
            outcomes = await asyncio.gather(
                *(withdrawer(client_for(server, timeout=5.0)) for _ in range(clients))
            )
        return [code for codes in outcomes for code in codes]

    codes = asyncio.run(run())
    assert codes.count(None) == 10_000 // amount
    assert codes.count("INSUFFICIENT_FUNDS") == clients * each - 10_000 // amount
    assert ledger.balance(3) == 10_000 % amount
    assert ledger.reconcile() == []
    assert set(ledger.applications().values()) == {1}


def test_udp_never_amplifies_but_tcp_answers_in_full(transport: str) -> None:
    text = "\u0390" * 500  # upper-cases to 3 code points: the reply is 4x the request

    async def run() -> None:
        async with running(transport, TextService()) as server:
            client = client_for(server)
            result = await client.call("text.convert", {"text": text})
            if transport == "tcp":  # the handshake proved the peer's address
                assert result.result["upper"] == text.upper()
            else:
                assert result.error_code == "RESULT_TOO_LARGE"
            ordinary = await client.call("text.convert", {"text": "hello " * 500})
            assert ordinary.result["upper"] == "HELLO " * 500
            await client.close()

    asyncio.run(run())


# -- binding ------------------------------------------------------------------------


def test_loopback_by_default_and_all_interfaces_only_with_a_warning() -> None:
    with served("text", "tcp") as quiet:
        pass
    assert quiet.stderr == ""
    with served("text", "tcp", "--host", "0.0.0.0") as loud:
        pass
    assert loud.stderr.splitlines()[0].startswith("warning: binding to 0.0.0.0")
