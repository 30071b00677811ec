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

from transports.wire import MAX_MESSAGE_SIZE, Reply


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
    size: int  # bytes counted against max_bytes: the key and the encoded reply


#: The reply cache's default byte budget. Entries are bounded by count too,
#: but 65,536 of them with replies of up to 16 KiB would be ~1 GiB.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class ReplyCache:
    """Bounded, expiring map from request key to its reply (at-most-once).

    ``capacity`` (entries) and ``max_bytes`` (the keys' and the encoded
    replies' sizes, summed) bound memory; ``retention`` (seconds) bounds how
    long a reply is kept. When a bound is reached the oldest entries go
    first. These are the knobs the reply-cache experiment turns: an entry
    evicted too early lets a late retry execute a second time. Thread-safe,
    since bank requests execute in a worker pool.
    """

    def __init__(
        self, capacity: int = 65536, retention: float = 300.0, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if capacity < 1 or retention <= 0:
            raise ValueError("reply cache needs capacity >= 1 and retention > 0")
        # Room for one entry of the largest request and reply, at least.
        if max_bytes < 2 * MAX_MESSAGE_SIZE:
            raise ValueError(f"reply cache needs max_bytes >= {2 * MAX_MESSAGE_SIZE}")
        self.capacity = capacity
        self.retention = retention
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes held now, as counted against ``max_bytes``."""
        return self._bytes

    def begin(self, key: str, now: float) -> Reply | InProgress | None:
        """Look up ``key``; on a miss, mark it in progress and return None.

        The caller executes the request only when this returns None.
        """
        with self._lock:
            self._expire(now)
            entry = self._entries.get(key)
            if entry is not None:
                return entry.reply if entry.reply is not None else IN_PROGRESS
            self._store(key, _Entry(None, now, len(key)))
            return None

    def complete(self, key: str, reply: Reply, now: float, size: int = 0) -> None:
        """Store ``reply`` for ``key``; ``size``: its encoded length in bytes."""
        with self._lock:
            self._store(key, _Entry(reply, now, len(key) + size))

    def clear(self) -> None:
        """Forget everything, as a server crash does."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _store(self, key: str, entry: _Entry) -> None:
        old = self._entries.pop(key, None)  # and the new entry goes last
        if old is not None:
            self._bytes -= old.size
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self.capacity or self._bytes > self.max_bytes:
            self._bytes -= self._entries.popitem(last=False)[1].size
            self.evictions += 1

    def _expire(self, now: float) -> None:
        # Entries are in insertion/completion order, so the oldest come first.
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.stored_at < self.retention:
                break
            del self._entries[key]
            self._bytes -= entry.size
            self.evictions += 1
