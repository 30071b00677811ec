"""Timed faults: a network partition, as a window of time rather than a coin per message.

Role: say, for a message sent at time ``t`` on one direction of one client's
link, whether a partition cuts it. Nothing here reads a clock: ``t`` is an
argument, measured from the run's origin (the simulator's time 0, the fault
proxy's start). A partition starts at ``start``, lasts ``duration`` and, when
``every`` is set, comes back every ``every`` seconds; it cuts requests,
replies or both, for chosen clients or all. ``FaultLink`` turns a cut into a
lost datagram (UDP) or a lost TCP transmission that the retransmission model
sends again until one copy goes out after the heal.

Spec keys (``transports/FAULTS.md``, "Timed faults: partitions")::

    partition=2s,partition_at=1s,partition_every=10s,partition_dir=replies,partition_clients=0-9+12
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Longest accepted start, duration or period, in seconds (as for every spec duration).
MAX_SECONDS = 60.0


class PartitionError(ValueError):
    """A partition setting is invalid (``FaultSpecError`` re-raises it with the spec)."""


class Cut(enum.Enum):
    """Which direction a partition cuts (spec key ``partition_dir``)."""

    BOTH = "both"
    REQUESTS = "requests"  # client -> server
    REPLIES = "replies"  # server -> client


#: The spec's duration parser (key, text) -> seconds, and its formatter.
ParseSeconds = Callable[[str, str], float]
FormatSeconds = Callable[[float], str]

#: Spec key -> Partition field, in canonical order.
KEYS: Mapping[str, str] = {
    "partition": "duration",
    "partition_at": "start",
    "partition_every": "every",
    "partition_dir": "cut",
    "partition_clients": "clients",
}


@dataclass(frozen=True)
class Partition:
    """One partition window, optionally periodic; ``duration == 0`` means none.

    ``clients``: the client indices it cuts (None: every client). A link's
    client index is the number in its label (``client3/request``: 3; the
    fault proxy numbers its connections and sessions from 1: ``conn3/...``).
    """

    duration: float = 0.0
    start: float = 0.0
    every: float = 0.0  # 0: once
    cut: Cut = Cut.BOTH
    clients: frozenset[int] | None = None

    def __post_init__(self) -> None:
        for name in ("duration", "start", "every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PartitionError(f"{_key(name)}: expected a duration, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= MAX_SECONDS):
                raise PartitionError(
                    f"{_key(name)} must be a duration in [0, {MAX_SECONDS:g}] seconds, "
                    f"got {value!r}"
                )
        if not isinstance(self.cut, Cut):
            raise PartitionError(f"partition_dir: expected one of {_CUTS}, got {self.cut!r}")
        if self.clients is not None:
            if not self.clients or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in self.clients
            ):
                raise PartitionError("partition_clients: expected client indices >= 0")
            object.__setattr__(self, "clients", frozenset(self.clients))
        others = (self.start, self.every, self.cut is not Cut.BOTH, self.clients is not None)
        if self.is_zero and any(others):
            raise PartitionError("partition_at, _every, _dir and _clients need partition=DURATION")
        if self.every and self.every < self.duration:
            raise PartitionError(
                f"partition_every ({self.every:g} s) must be at least partition "
                f"({self.duration:g} s): the windows would overlap"
            )

    @property
    def is_zero(self) -> bool:
        return self.duration == 0.0

    def window(self, t: float) -> tuple[float, float] | None:
        """The window ``[start, end)`` that contains time ``t``, or None."""
        if self.is_zero or t < self.start:
            return None
        begin = self.start
        if self.every:
            begin += math.floor((t - self.start) / self.every) * self.every
        end = begin + self.duration
        return (begin, end) if t < end else None

    def applies(self, reply: bool, client: int | None) -> bool:
        """Does it cut this direction of this client's link (time aside)?"""
        if self.is_zero or self.cut is (Cut.REQUESTS if reply else Cut.REPLIES):
            return False
        return self.clients is None or (client is not None and client in self.clients)

    def cuts(self, reply: bool, client: int | None, t: float) -> bool:
        """Is a message sent at ``t`` in this direction of this client's link cut?"""
        return self.applies(reply, client) and self.window(t) is not None

    def items(self, seconds: FormatSeconds = repr) -> list[str]:
        """The canonical spec items (``key=value``), none when there is no partition."""
        if self.is_zero:
            return []
        out = [f"partition={seconds(self.duration)}"]
        if self.start:
            out.append(f"partition_at={seconds(self.start)}")
        if self.every:
            out.append(f"partition_every={seconds(self.every)}")
        if self.cut is not Cut.BOTH:
            out.append(f"partition_dir={self.cut.value}")
        if self.clients is not None:
            out.append(f"partition_clients={format_clients(self.clients)}")
        return out

    @classmethod
    def from_items(cls, items: Mapping[str, str], parse_seconds: ParseSeconds) -> Partition:
        """Build from spec items (key -> raw text); ``parse_seconds(key, text)`` reads durations."""
        values: dict[str, object] = {}
        for key, text in items.items():
            name = KEYS[key]
            if name == "cut":
                values[name] = _parse_cut(text)
            elif name == "clients":
                values[name] = parse_clients(text)
            else:
                values[name] = parse_seconds(key, text)
        return cls(**values)  # type: ignore[arg-type]


_CUTS = ", ".join(c.value for c in Cut)


def _key(name: str) -> str:
    return next(k for k, f in KEYS.items() if f == name)


def _parse_cut(text: str) -> Cut:
    try:
        return Cut(text)
    except ValueError:
        raise PartitionError(f"partition_dir: expected one of {_CUTS}, got {text!r}") from None


def parse_clients(text: str) -> frozenset[int] | None:
    """``all`` -> None; ``0-9+12`` -> {0..9, 12} (``+`` joins items: the spec uses commas)."""
    if text.strip().lower() == "all":
        return None
    out: set[int] = set()
    for item in text.split("+"):
        low, dash, high = item.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise PartitionError(
                f"partition_clients: expected 'all' or indices like 0-9+12, got {text!r}"
            ) from None
        if first < 0 or last < first:
            raise PartitionError(f"partition_clients: bad range {item.strip()!r} in {text!r}")
        out.update(range(first, last + 1))
    return frozenset(out)


def format_clients(clients: Iterable[int]) -> str:
    """The shortest ``a-b+c`` text of a set of indices (``parse_clients`` reads it back)."""
    ranges: list[list[int]] = []
    for c in sorted(clients):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "+".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)


#: No partition: the default of every spec.
NO_PARTITION = Partition()
