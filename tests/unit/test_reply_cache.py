"""The at-most-once reply cache (transports.semantics.ReplyCache): its bounds."""

from __future__ import annotations

import pytest

from services.text import TextService
from transports.endpoint import ServerEndpoint
from transports.semantics import IN_PROGRESS, ReplyCache, Semantics
from transports.wire import MAX_MESSAGE_SIZE, Reply, Request, decode_reply, encode_request

BUDGET = 2 * MAX_MESSAGE_SIZE  # the smallest byte budget a cache accepts


def reply(n: int) -> Reply:
    return Reply.ok(f"r{n}", 1, {"n": n})


def test_a_miss_marks_the_key_in_progress_until_complete() -> None:
    cache = ReplyCache()
    assert cache.begin("k", 0.0) is None
    assert cache.begin("k", 0.1) is IN_PROGRESS
    cache.complete("k", reply(1), 0.2, size=100)
    assert cache.begin("k", 0.3) == reply(1)
    assert len(cache) == 1 and cache.bytes == len("k") + 100


def test_capacity_evicts_the_oldest() -> None:
    cache = ReplyCache(capacity=2)
    for n in range(3):
        cache.begin(f"k{n}", 0.0)
        cache.complete(f"k{n}", reply(n), 0.0, size=10)
    assert len(cache) == 2 and cache.evictions == 1
    assert cache.begin("k0", 0.0) is None  # evicted: executes again
    assert cache.begin("k2", 0.0) == reply(2)


def test_retention_expires_old_replies() -> None:
    cache = ReplyCache(retention=1.0)
    cache.begin("k", 0.0)
    cache.complete("k", reply(1), 0.0, size=10)
    assert cache.begin("k", 0.99) == reply(1)
    assert cache.begin("k", 1.0) is None  # expired, and now in progress again
    assert cache.evictions == 1 and cache.bytes == len("k")


def test_the_byte_budget_evicts_the_oldest_and_holds() -> None:
    cache = ReplyCache(max_bytes=BUDGET)
    size = MAX_MESSAGE_SIZE // 2
    for n in range(10):
        key = f"k{n}"
        cache.begin(key, 0.0)
        cache.complete(key, reply(n), 0.0, size=size)
        assert cache.bytes <= BUDGET
    # Three entries of 8 KiB and a key fit in 32 KiB; the other seven went, oldest first.
    assert len(cache) == 3 and cache.evictions == 7
    assert cache.bytes == sum(len(f"k{n}") + size for n in (7, 8, 9))
    assert cache.begin("k6", 0.0) is None and cache.begin("k9", 0.0) == reply(9)


def test_clear_forgets_entries_and_bytes() -> None:
    cache = ReplyCache()
    cache.begin("k", 0.0)
    cache.complete("k", reply(1), 0.0, size=10)
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
    assert cache.begin("k", 0.0) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"capacity": 0}, {"retention": 0.0}, {"max_bytes": BUDGET - 1}],
)
def test_refuses_bounds_that_hold_nothing(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ReplyCache(**kwargs)  # type: ignore[arg-type]


def test_an_endpoint_counts_the_encoded_reply_against_the_budget() -> None:
    """Large text replies (~8 KiB each) from an at-most-once endpoint stay within budget."""
    cache = ReplyCache(max_bytes=BUDGET)
    endpoint = ServerEndpoint(TextService(), Semantics.AT_MOST_ONCE, reply_cache=cache)
    text = "x" * 4000
    for n in range(20):
        data = encode_request(Request(f"c1-{n}", "text.convert", {"text": text}))
        answer = endpoint.handle(data, now=0.0)
        assert answer is not None and decode_reply(answer).result is not None
        assert cache.bytes <= BUDGET
    assert 0 < len(cache) < 20 and cache.evictions == 20 - len(cache)
    assert cache.bytes > len(cache) * len(answer)  # each reply's encoded bytes counted
    # The last request is still answered from the cache, with its retry's attempt.
    retry = encode_request(Request("c1-19", "text.convert", {"text": text}, attempt=2))
    cached = endpoint.handle(retry, now=1.0)
    assert cached is not None and decode_reply(cached).attempt == 2
    assert endpoint.counters["reply_cache_hits"] == 1
