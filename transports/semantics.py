"""Call semantics and the server's reply cache.

Four semantics, each a real mechanism from the literature:

``maybe``          one attempt, no retry.
``at-least-once``  the client retries; the server executes every request it
                   receives (ONC RPC over UDP).
``at-most-once``   the client retries; the server remembers recent replies by
                   request id in memory and answers a retry from that cache
                   (Birrell & Nelson 1984; the NFS duplicate request cache).
                   A retry that arrives while the first copy is still being
                   executed is dropped, never executed twice.
``exactly-once``   the client retries; the bank stores the request id as an
                   idempotency key in the same SQLite transaction as the
                   ledger change, so the guarantee survives a restart
                   (Stripe's idempotency keys, NFSv4.1 sessions).
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict
from dataclasses import dataclass

from transports.wire import Reply


class Semantics(enum.Enum):
    MAYBE = "maybe"
    AT_LEAST_ONCE = "at-least-once"
    AT_MOST_ONCE = "at-most-once"
    EXACTLY_ONCE = "exactly-once"

    @property
    def retries(self) -> bool:
        return self is not Semantics.MAYBE

    @classmethod
    def parse(cls, text: str) -> Semantics:
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown semantics {text!r}; choose one of: {names}") from None


class InProgress:
    """Marker: the first copy of this request is still executing."""


IN_PROGRESS = InProgress()


@dataclass
class _Entry:
    reply: Reply | None  # None while in progress
    stored_at: float


class ReplyCache:
    """Bounded, expiring map from request key to its reply (at-most-once).

    ``capacity`` bounds memory; ``retention`` (seconds) bounds how long a reply
    is kept. Both are the knobs the reply-cache experiment turns: an entry
    evicted too early lets a late retry execute a second time. Thread-safe,
    since bank requests execute in a worker pool.
    """

    def __init__(self, capacity: int = 65536, retention: float = 300.0) -> None:
        if capacity < 1 or retention <= 0:
            raise ValueError("reply cache needs capacity >= 1 and retention > 0")
        self.capacity = capacity
        self.retention = retention
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: str, now: float) -> Reply | InProgress | None:
        """Look up ``key``; on a miss, mark it in progress and return None.

        The caller executes the request only when this returns None.
        """
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None:
                return entry.reply if entry.reply is not None else IN_PROGRESS
            self._entries[key] = _Entry(None, now)
            self._evict_over_capacity()
            return None

    def complete(self, key: str, reply: Reply, now: float) -> None:
        with self._lock:
            self._entries[key] = _Entry(reply, now)
            self._entries.move_to_end(key)
            self._evict_over_capacity()

    def clear(self) -> None:
        """Forget everything, as a server crash does."""
        with self._lock:
            self._entries.clear()

    def _expire(self, now: float) -> None:
        # Entries are in insertion/completion order, so the oldest come first.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.stored_at < self.retention:
                break
            del self._entries[key]
            self.evictions += 1

    def _evict_over_capacity(self) -> None:
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evictions += 1
