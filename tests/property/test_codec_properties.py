"""Corruption is detected or rejected, never misread as another valid operation.

tests/unit/test_wire.py already checks round trips, every single bit flip,
up to 8 random flips and every truncation of a message, and
tests/unit/test_framing.py every split point of a framed stream. This file
adds the end-to-end view: corruptions that are not bit flips (bursts,
insertions, deletions, truncation then extension, splices of two real
messages, many flips) fed to a ``ServerEndpoint`` in front of a real bank
ledger, alone and inside a length-prefixed TCP stream. Whatever the code
does with such bytes (reject, drop, close the connection, wait for more),
it must never apply, or decode to, a request other than one really sent.

CRC-32 lets one random corruption in 2**32 through, so these tests would
only fail by such a fluke (never seen) or through a structural hole, such as
a field read before the checksum is verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from services.bank import BankService
from services.ledger import Ledger
from tests.property.budget import examples
from transports.endpoint import ServerEndpoint
from transports.framing import LENGTH_PREFIX_SIZE, FramingError, LengthPrefixDecoder, frame
from transports.semantics import Semantics
from transports.wire import Request, WireError, decode_request, encode_request

PIN = "0000"
ACCOUNT = 7

CODEC = settings(max_examples=examples(500), deadline=None)


@dataclass(frozen=True)
class Bank:
    ledger: Ledger
    endpoint: ServerEndpoint
    token: str

    def deposit(self, index: int, amount: int, attempt: int = 1) -> Request:
        """A valid deposit request. Ids repeat across examples, on purpose: the
        drawn bytes must not depend on how many examples ran before (and the
        at-least-once endpoint does not deduplicate)."""
        args = {"token": self.token, "amount": amount}
        return Request(f"d{index}", "bank.deposit", args, attempt)

    def snapshot(self) -> tuple[dict[str, int], int]:
        return self.ledger.applications(), self.ledger.balance(ACCOUNT)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    path = tmp_path_factory.mktemp("codec") / "ledger.sqlite3"
    with Ledger(str(path), demo_accounts=False, scrypt_n=2**10, session_ttl=1e9) as ledger:
        ledger.create_account(ACCOUNT, "holder", PIN, 0)
        token, _ = ledger.login(ACCOUNT, PIN, now=0.0)
        # at-least-once: the endpoint executes whatever it accepts, nothing hides a misread.
        endpoint = ServerEndpoint(BankService(ledger), Semantics.AT_LEAST_ONCE)
        yield Bank(ledger, endpoint, token)


# -- corruptions ------------------------------------------------------------------

amounts = st.integers(1, 10**6)
attempts = st.integers(1, 9)


@st.composite
def corrupt(draw: st.DrawFn, data: bytes, other: bytes) -> tuple[str, bytes]:
    """One corruption of ``data`` (``other``: another real message, for splices)."""
    kind = draw(
        st.sampled_from(["bits", "burst", "insert", "delete", "truncate+extend", "splice", "swap"])
    )
    size = len(data)
    at = draw(st.integers(0, size - 1))
    if kind == "bits":
        bits = draw(st.lists(st.integers(0, 8 * size - 1), min_size=1, max_size=64, unique=True))
        out = bytearray(data)
        for bit in bits:
            out[bit // 8] ^= 1 << (bit % 8)
        bad = bytes(out)
    elif kind == "burst":
        noise = draw(st.binary(min_size=1, max_size=16))[: size - at]
        bad = data[:at] + noise + data[at + len(noise) :]
    elif kind == "insert":
        bad = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif kind == "delete":
        bad = data[:at] + data[at + draw(st.integers(1, 8)) :]
    elif kind == "truncate+extend":
        bad = data[:at] + draw(st.binary(min_size=1, max_size=32))
    elif kind == "splice":
        bad = data[:at] + other[draw(st.integers(0, len(other) - 1)) :]
        assume(bad != other)  # that would be the other message, intact
    else:
        j = draw(st.integers(0, size - 1))
        out = bytearray(data)
        out[at], out[j] = out[j], out[at]
        bad = bytes(out)
    assume(bad != data)
    return kind, bad


# -- one message, straight to the endpoint ------------------------------------------


@CODEC
@given(data=st.data(), amount=amounts, other_amount=amounts, attempt=attempts)
def test_a_corrupted_deposit_never_changes_the_ledger(
    bank: Bank, data: st.DataObject, amount: int, other_amount: int, attempt: int
) -> None:
    good = encode_request(bank.deposit(0, amount, attempt))
    other = encode_request(bank.deposit(1, other_amount))
    kind, bad = data.draw(corrupt(good, other), label="corruption")
    event(kind)
    before = bank.snapshot()
    reply = bank.endpoint.handle(bad, now=1.0)
    assert bank.snapshot() == before, kind
    # Nothing read from an unverified message is trusted, not even its id:
    # the endpoint drops it silently and the client's timer retries.
    assert reply is None, kind
    with pytest.raises(WireError) as excinfo:
        decode_request(bad)
    assert not excinfo.value.answerable


# -- a framed TCP stream with one damaged frame --------------------------------------


@dataclass
class StreamOutcome:
    decoded: list[Request | None]  # per payload: the request, or None if rejected
    closed: bool  # the decoder raised FramingError: the server closes the connection
    waiting: int  # bytes buffered at the end: a stalled frame (closed by frame_timeout)


def read_stream(stream: bytes, cuts: list[int]) -> StreamOutcome:
    """What the TCP server's decoder makes of ``stream`` arriving in pieces."""
    decoder = LengthPrefixDecoder()
    payloads: list[bytes] = []
    closed = False
    start = 0
    try:
        for cut in [*sorted(cuts), len(stream)]:
            decoder.feed(stream[start:cut])
            start = cut
            while (payload := decoder.next_message()) is not None:
                payloads.append(payload)
    except FramingError:
        closed = True
    decoded: list[Request | None] = []
    for payload in payloads:
        try:
            decoded.append(decode_request(payload))
        except WireError as err:
            assert not err.answerable  # no error reply to garbage either
            decoded.append(None)
    return StreamOutcome(decoded, closed, 0 if closed else decoder.buffered)


def sent_in_order(decoded: list[Request | None], sent: list[Request]) -> list[int]:
    """Positions in ``sent`` of every valid request read; checks they are real and in order."""
    valid = [r for r in decoded if r is not None]
    assert all(r in sent for r in valid), "a request nobody sent"
    positions = [sent.index(r) for r in valid]
    assert positions == sorted(set(positions)), "reordered or duplicated by the framing"
    return positions


@CODEC
@given(
    data=st.data(),
    amounts_=st.lists(amounts, min_size=2, max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
)
def test_a_corrupted_frame_never_yields_another_request(
    bank: Bank, data: st.DataObject, amounts_: list[int], cuts: list[int]
) -> None:
    sent = [bank.deposit(k, amount) for k, amount in enumerate(amounts_)]
    frames = [frame(encode_request(r)) for r in sent]
    victim = data.draw(st.integers(0, len(frames) - 1), label="victim")
    neighbour = frames[(victim + 1) % len(frames)]
    kind, bad = data.draw(corrupt(frames[victim], neighbour), label="corruption")
    stream = b"".join(frames[:victim]) + bad + b"".join(frames[victim + 1 :])
    outcome = read_stream(stream, [c for c in cuts if c <= len(stream)])
    event(
        f"{kind}: " + ("closed" if outcome.closed else "stalled" if outcome.waiting else "in step")
    )

    positions = sent_in_order(outcome.decoded, sent)
    if not bad.startswith(frames[victim]):
        assert victim not in positions, kind  # the damaged frame never reads as valid
    # else every byte the frame declares is intact and the damage lies after it
    # (an insert just before its last byte that repeats that byte): the frame
    # reads as sent, and the extra bytes garble what follows it.
    # Frames before the damaged one read intact; a bad length prefix closes the
    # connection and may take undrained earlier frames of the same read with it
    # (the client sees the connection drop and retries them).
    read_before = outcome.decoded[:victim]
    assert read_before == sent[: len(read_before)], kind
    if not outcome.closed:
        assert len(read_before) == victim, kind

    # And the bank applies exactly the intact requests it read, once each.
    before, balance = bank.snapshot()
    for request in outcome.decoded:
        if request is not None:
            bank.endpoint.handle(encode_request(request), now=1.0)
    after, new_balance = bank.snapshot()
    applied = {rid: n - before.get(rid, 0) for rid, n in after.items() if n != before.get(rid)}
    assert applied == {sent[p].id: 1 for p in positions}
    assert new_balance - balance == sum(sent[p].args["amount"] for p in positions)


@CODEC
@given(
    data=st.data(),
    amounts_=st.lists(amounts, min_size=2, max_size=5),
    cuts=st.lists(st.integers(0, 2000), max_size=4),
)
def test_payload_damage_spares_the_following_frames(
    bank: Bank, data: st.DataObject, amounts_: list[int], cuts: list[int]
) -> None:
    # Damage that keeps the length prefix and the frame size (what a link
    # that flips or overwrites bytes does): the stream stays in step, only
    # the damaged frame is rejected, every other one decodes.
    sent = [bank.deposit(k, amount) for k, amount in enumerate(amounts_)]
    frames = [frame(encode_request(r)) for r in sent]
    victim = data.draw(st.integers(0, len(frames) - 1), label="victim")
    payload = frames[victim][LENGTH_PREFIX_SIZE:]
    at = data.draw(st.integers(0, len(payload) - 1), label="at")
    noise = data.draw(st.binary(min_size=1, max_size=16), label="noise")[: len(payload) - at]
    damaged = payload[:at] + noise + payload[at + len(noise) :]
    assume(damaged != payload)
    frames[victim] = frames[victim][:LENGTH_PREFIX_SIZE] + damaged
    stream = b"".join(frames)
    outcome = read_stream(stream, [c for c in cuts if c <= len(stream)])

    assert not outcome.closed and outcome.waiting == 0
    expected: list[Request | None] = list(sent)
    expected[victim] = None
    assert outcome.decoded == expected
