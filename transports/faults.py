"""Seeded, sans-I/O fault layer: what the network does to each message.

Role: decide, for one direction of one link, whether a message is lost,
duplicated, held back (reordered), delayed, corrupted, or (stream/TCP mode)
breaks the connection. The decisions are pure and synchronous: ``FaultLink``
never reads a clock or touches a socket; it takes ``now`` and returns a
``Verdict`` that a driver (asyncio TCP/UDP, or the virtual-time simulator)
carries out. One spec string (``FaultSpec``) configures every fault, and one
seed reproduces every decision. The spec splits into the link's faults
(``LinkFaults``, what ``FaultLink`` takes) and the server's (``ServerFaults``:
application failure and crash, which the server programs inject). The model is
documented in ``FAULTS.md``.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import math
import random
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "MAX_DURATION",
    "Delivery",
    "Direction",
    "FaultLink",
    "FaultSpec",
    "FaultSpecError",
    "LinkFaults",
    "ServerFaults",
    "Verdict",
    "corrupt_bits",
    "expected_delivery",
    "expected_intact",
    "label_for",
    "link_pair",
    "mean_burst_length",
    "stationary_loss_rate",
]

#: Longest accepted duration (delay, jitter, gap), in seconds: anything longer is
#: a typo (``delay=2`` meant as milliseconds) rather than a network.
MAX_DURATION = 60.0

# Spec keys in canonical order, mapped to FaultSpec field names.
_KEY_TO_FIELD: dict[str, str] = {
    "loss": "loss",
    "dup": "dup",
    "reorder": "reorder",
    "gap": "reorder_gap",
    "delay": "delay",
    "jitter": "jitter",
    "corrupt": "corrupt",
    "ge_p": "ge_p",
    "ge_r": "ge_r",
    "ge_loss": "ge_loss",
    "app_fail": "app_fail",
    "reset": "reset",
    "crash": "crash",
}
_SERVER_FIELDS = frozenset({"app_fail", "crash"})
_ALL_KEYS = tuple(_KEY_TO_FIELD.items())
_LINK_KEYS = tuple((k, f) for k, f in _KEY_TO_FIELD.items() if f not in _SERVER_FIELDS)
_SERVER_KEYS = tuple((k, f) for k, f in _KEY_TO_FIELD.items() if f in _SERVER_FIELDS)
_DURATION_FIELDS = frozenset({"reorder_gap", "delay", "jitter"})
# The link fields that make a link touch a message (the others only parametrise them).
_ACTIVE_LINK_FIELDS = ("loss", "dup", "reorder", "delay", "jitter", "corrupt", "ge_p", "reset")
_ALLOWED_KEYS = ", ".join(_KEY_TO_FIELD)
# Checked longest first so "2ms" is not read as "2m" seconds.
_UNITS: tuple[tuple[str, float], ...] = (("ms", 1e3), ("us", 1e6), ("s", 1.0))


class FaultSpecError(ValueError):
    """A fault spec string or value is invalid; the message names the key and the rule."""


def _format_number(x: float) -> str:
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _format_duration(seconds: float) -> str:
    # The shortest of "2ms" / "2000us" / "0.002s" that parses back to the same float
    # ("s" always does: it is repr of the value itself).
    candidates = (_format_number(seconds * per_second) + unit for unit, per_second in _UNITS)
    return min((c for c in candidates if _parse_duration("", c) == seconds), key=len)


def _parse_number(key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{key}: cannot parse {text!r} as a number") from None
    if not math.isfinite(value):
        raise FaultSpecError(f"{key}: value must be finite, got {text!r}")
    return value


def _parse_duration(key: str, text: str) -> float:
    number, per_second = text, 1.0
    for unit, unit_per_second in _UNITS:
        if text.endswith(unit):
            number, per_second = text[: -len(unit)].strip(), unit_per_second
            break
    try:
        value = float(number)
    except ValueError:
        raise FaultSpecError(
            f"{key}: expected a duration like 2ms, 500us, 0.1s or 0.002 (seconds), got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise FaultSpecError(f"{key}: value must be finite, got {text!r}")
    # Divide rather than multiply by 1e-3: 2/1000 is exactly float("0.002").
    return value / per_second


def _check_values(obj: object, keys: tuple[tuple[str, str], ...]) -> None:
    """Validate ``obj``'s fields named in ``keys`` (spec key, field), in that order."""
    for key, name in keys:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FaultSpecError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise FaultSpecError(f"{key}: value must be finite, got {value!r}")
        if name in _DURATION_FIELDS:
            if not 0.0 <= value <= MAX_DURATION:
                raise FaultSpecError(
                    f"{key} must be a duration in [0, {MAX_DURATION:g}] seconds, "
                    f"got {_format_number(value)} s"
                )
        elif not 0.0 <= value <= 1.0:
            raise FaultSpecError(
                f"{key} must be a probability in [0, 1], got {_format_number(value)}"
            )


def _spec_text(obj: object, keys: tuple[tuple[str, str], ...]) -> str:
    """Canonical spec string of ``obj``'s fields named in ``keys``: non-default ones, in order."""
    items = []
    for key, name in keys:
        value = getattr(obj, name)
        if value == _DEFAULTS[name]:
            continue
        text = _format_duration(value) if name in _DURATION_FIELDS else _format_number(value)
        items.append(f"{key}={text}")
    return ",".join(items) if items else FaultSpec.NONE


@dataclass(frozen=True)
class LinkFaults:
    """What the network does to messages: the link part of a ``FaultSpec``; all off by default.

    Probabilities are per message. Durations are in seconds. ``reset`` only
    acts in stream (TCP) mode. ``str()`` gives its spec string.
    """

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_gap: float = 0.005
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    ge_p: float = 0.0
    ge_r: float = 0.0
    ge_loss: float = 1.0
    reset: float = 0.0

    def __post_init__(self) -> None:
        _check_values(self, _LINK_KEYS)

    def __str__(self) -> str:
        return _spec_text(self, _LINK_KEYS)

    @property
    def gilbert_elliott(self) -> bool:
        """True when the Gilbert-Elliott burst-loss chain is active (``ge_p > 0``)."""
        return self.ge_p > 0.0

    @property
    def is_zero(self) -> bool:
        """True when a ``FaultLink`` with these faults passes every message untouched."""
        return not any(getattr(self, name) for name in _ACTIVE_LINK_FIELDS)


@dataclass(frozen=True)
class ServerFaults:
    """What happens to the server: the server part of a ``FaultSpec``; all off by default.

    ``app_fail``: probability that the bank refuses a deposit or withdrawal it
    would execute (the lab's random failure). ``crash``: probability that the
    server crashes while handling one (the simulator: per request arrival).
    The server programs inject them; no link does.
    """

    app_fail: float = 0.0
    crash: float = 0.0

    def __post_init__(self) -> None:
        _check_values(self, _SERVER_KEYS)

    def __str__(self) -> str:
        return _spec_text(self, _SERVER_KEYS)

    @property
    def is_zero(self) -> bool:
        """True when neither application failures nor crashes are configured."""
        return not (self.app_fail or self.crash)


@dataclass(frozen=True)
class FaultSpec:
    """Every fault knob, as one spec string configures them; all off by default.

    Probabilities are per message. Durations are in seconds. The fields are
    those of ``LinkFaults`` and ``ServerFaults`` together; ``link`` and
    ``server`` split them for the layer that injects each.
    """

    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    reorder_gap: float = 0.005
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    ge_p: float = 0.0
    ge_r: float = 0.0
    ge_loss: float = 1.0
    app_fail: float = 0.0
    reset: float = 0.0
    crash: float = 0.0

    NONE: ClassVar[str] = "none"

    def __post_init__(self) -> None:
        # Validate here, not only in parse(), so dataclasses.replace and direct
        # construction cannot build an invalid spec either.
        _check_values(self, _ALL_KEYS)

    @classmethod
    def of(cls, link: LinkFaults | None = None, server: ServerFaults | None = None) -> FaultSpec:
        """The spec with these link and server faults (none for a part left out)."""
        values = dataclasses.asdict(link or LinkFaults())
        values.update(dataclasses.asdict(server or ServerFaults()))
        return cls(**values)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``"loss=0.1,delay=2ms,..."``; ``""`` or ``"none"`` means no faults."""
        stripped = text.strip()
        if not stripped or stripped.lower() == cls.NONE:
            return cls()
        values: dict[str, float] = {}
        for raw_item in stripped.split(","):
            item = raw_item.strip()
            key, sep, raw_value = item.partition("=")
            key, raw_value = key.strip(), raw_value.strip()
            if not sep or not key or not raw_value:
                raise FaultSpecError(
                    f"malformed item {item!r} in fault spec {text!r}: expected key=value "
                    f"(keys: {_ALLOWED_KEYS})"
                )
            name = _KEY_TO_FIELD.get(key)
            if name is None:
                raise FaultSpecError(
                    f"unknown fault key {key!r} in {text!r}; allowed keys: {_ALLOWED_KEYS}"
                )
            if name in values:
                raise FaultSpecError(f"duplicate fault key {key!r} in {text!r}")
            if name in _DURATION_FIELDS:
                values[name] = _parse_duration(key, raw_value)
            else:
                values[name] = _parse_number(key, raw_value)
        return cls(**values)

    def to_spec(self) -> str:
        """Canonical spec string: non-default keys in fixed order; parses back equal."""
        return _spec_text(self, _ALL_KEYS)

    def __str__(self) -> str:
        return self.to_spec()

    def with_loss(self, loss: float) -> FaultSpec:
        """This spec with another independent loss probability (for sweeps)."""
        return dataclasses.replace(self, loss=loss)

    @property
    def link(self) -> LinkFaults:
        """The link faults, for ``FaultLink``."""
        return LinkFaults(**{name: getattr(self, name) for _, name in _LINK_KEYS})

    @property
    def server(self) -> ServerFaults:
        """The server faults (application failure, crash), for the server programs."""
        return ServerFaults(**{name: getattr(self, name) for _, name in _SERVER_KEYS})

    @property
    def is_zero(self) -> bool:
        """True when no fault of any kind is configured (link, application or crash)."""
        return self.link.is_zero and self.server.is_zero


_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(FaultSpec)}


class Direction(enum.Enum):
    """Which way a message travels on a client's link."""

    REQUEST = "request"  # client -> server
    REPLY = "reply"  # server -> client


@dataclass(frozen=True)
class Delivery:
    """One copy of a message arriving at time ``at`` with (possibly corrupted) ``data``."""

    at: float
    data: bytes


@dataclass(frozen=True)
class Verdict:
    """What the link does with one message.

    ``deliveries`` is empty when the message is dropped (or the stream reset);
    ``reset`` tells a stream driver to break the connection at this message;
    ``events`` names what happened, in a fixed order, for counters.
    """

    deliveries: tuple[Delivery, ...]
    reset: bool
    events: tuple[str, ...]

    @property
    def delivered(self) -> bool:
        return bool(self.deliveries)


def label_for(role: str, index: int, direction: Direction) -> str:
    """Conventional link label: ``label_for("client", 3, Direction.REPLY) == "client3/reply"``."""
    return f"{role}{index}/{direction.value}"


def corrupt_bits(data: bytes, rng: random.Random, nbits: int) -> bytes:
    """Return ``data`` with ``nbits`` distinct random bits flipped (never equal to ``data``)."""
    total = len(data) * 8
    if not 1 <= nbits <= total:
        raise ValueError(f"nbits must be in [1, {total}] for {len(data)} bytes, got {nbits}")
    out = bytearray(data)
    # Distinct positions: flipping the same bit twice would undo the damage.
    for position in rng.sample(range(total), nbits):
        out[position >> 3] ^= 1 << (position & 7)
    return bytes(out)


class FaultLink:
    """Fault decisions for one direction of one link (one client's connection or datagram flow).

    Every call to ``apply`` makes the same eight draws from a private RNG seeded
    with ``f"{seed}/{label}"``, whatever faults are enabled ("common random
    numbers"): switching ``dup`` on does not change which messages are lost, and
    the messages lost at ``loss=0.1`` are a subset of those lost at ``loss=0.2``.
    """

    def __init__(self, faults: LinkFaults, seed: int, label: str, *, stream: bool = False) -> None:
        self.faults = faults
        self.seed = seed
        self.label = label
        self.stream = stream
        self.counters: collections.Counter[str] = collections.Counter()
        # str seeds are hashed with SHA-512 by random.Random: stable across runs,
        # unlike hash(), which PYTHONHASHSEED randomises.
        self._rng = random.Random(f"{seed}/{label}")
        self._bad = False  # Gilbert-Elliott state: False = good
        self._fifo_floor = -math.inf  # stream mode: last delivery time on this connection
        self._passthrough = faults.is_zero
        #: Every message is delivered at once, untouched (all probabilities and
        #: delays zero, and ``apply`` not overridden): drivers may then skip
        #: building a ``Verdict`` and call ``count_passthrough`` instead.
        self.passthrough = self._passthrough and type(self).apply is FaultLink.apply

    def apply(self, data: bytes, now: float) -> Verdict:
        """Decide the fate of one message sent at ``now``."""
        self.counters["messages"] += 1
        if self._passthrough:
            # A link's faults never change, so skipping the draws cannot shift any
            # later decision of this link, and other links have their own RNGs.
            return Verdict((Delivery(now, data),), False, ())
        faults = self.faults
        draw = self._rng.random
        # The fixed draw order (never skip one; see the class docstring).
        u_state = draw()
        u_loss = draw()
        u_reset = draw()
        u_reorder = draw()
        u_dup = draw()
        u_corrupt = draw()
        u_jitter = draw()
        corrupt_seed = self._rng.getrandbits(64)

        if faults.ge_p > 0.0:
            self._bad = (u_state >= faults.ge_r) if self._bad else (u_state < faults.ge_p)
        lost = u_loss < (faults.ge_loss if self._bad else faults.loss)
        events: list[str] = []

        if self.stream:
            broken = u_reset < faults.reset
            if lost or broken:
                # TCP hides a single loss by retransmitting; a message the model
                # loses stands for a connection that gave up: it breaks here.
                self._fifo_floor = -math.inf  # the next message rides a new connection
                return self._record(Verdict((), True, ("drop", "reset") if lost else ("reset",)))
        elif lost:
            return self._record(Verdict((), False, ("drop",)))

        offset = faults.delay + faults.jitter * (2.0 * u_jitter - 1.0)
        at = now + offset if offset > 0.0 else now
        reordered = u_reorder < faults.reorder
        duplicated = u_dup < faults.dup
        if self.stream:
            # TCP's sequence numbers absorb duplicates and reordering.
            if reordered:
                events.append("absorbed_reorder")
            if duplicated:
                events.append("absorbed_dup")
            if at < self._fifo_floor:
                at = self._fifo_floor  # a byte stream never overtakes itself
                events.append("fifo_hold")
            self._fifo_floor = at
        else:
            if reordered:
                at += faults.reorder_gap
                events.append("reorder")
            if duplicated:
                events.append("dup")
        if u_corrupt < faults.corrupt and data:
            # A sub-RNG keeps the main draw count fixed however many bits flip.
            bit_rng = random.Random(corrupt_seed)
            data = corrupt_bits(data, bit_rng, min(bit_rng.randint(1, 3), len(data) * 8))
            events.append("corrupt")
        if offset > 0.0:
            events.append("delay")

        first = Delivery(at, data)
        if duplicated and not self.stream:
            # Both copies carry the same bytes: duplication happens after the damage.
            deliveries: tuple[Delivery, ...] = (first, Delivery(at + faults.reorder_gap, data))
        else:
            deliveries = (first,)
        return self._record(Verdict(deliveries, False, tuple(events)))

    def count_passthrough(self) -> None:
        """Count one message of a ``passthrough`` link, as ``apply`` would."""
        self.counters["messages"] += 1

    def _record(self, verdict: Verdict) -> Verdict:
        self.counters.update(verdict.events)
        return verdict

    def __repr__(self) -> str:
        mode = "stream" if self.stream else "datagram"
        return f"FaultLink({self.faults}, seed={self.seed}, label={self.label!r}, {mode})"


def link_pair(
    faults: LinkFaults, seed: int, role: str, index: int, *, stream: bool = False
) -> tuple[FaultLink, FaultLink]:
    """The (REQUEST, REPLY) links of one client, labelled with ``label_for``."""
    return (
        FaultLink(faults, seed, label_for(role, index, Direction.REQUEST), stream=stream),
        FaultLink(faults, seed, label_for(role, index, Direction.REPLY), stream=stream),
    )


# --- analytic helpers -------------------------------------------------------


def stationary_loss_rate(faults: LinkFaults) -> float:
    """Long-run fraction of messages the network loses (loss or Gilbert-Elliott)."""
    if not faults.gilbert_elliott:
        return faults.loss
    pi_bad = faults.ge_p / (faults.ge_p + faults.ge_r)
    return (1.0 - pi_bad) * faults.loss + pi_bad * faults.ge_loss


def expected_delivery(faults: LinkFaults, *, stream: bool = False) -> float:
    """Probability one message arrives at all (possibly corrupted).

    In stream mode a ``reset`` draw also prevents delivery; it is independent of
    the loss draw, so the probabilities multiply.
    """
    delivered = 1.0 - stationary_loss_rate(faults)
    return delivered * (1.0 - faults.reset) if stream else delivered


def expected_intact(faults: LinkFaults, *, stream: bool = False) -> float:
    """Probability one message arrives and passes the receiver's CRC.

    A duplicate carries the same bytes as the original, so it does not help.
    """
    return expected_delivery(faults, stream=stream) * (1.0 - faults.corrupt)


def mean_burst_length(faults: LinkFaults) -> float:
    """Mean number of consecutive messages spent in the bad state: ``1 / ge_r``.

    This is the mean loss-burst length when ``ge_loss = 1`` and ``loss = 0``;
    without Gilbert-Elliott, independent loss gives ``1 / (1 - loss)``.
    """
    if not faults.gilbert_elliott:
        return 1.0 / (1.0 - faults.loss) if faults.loss < 1.0 else math.inf
    return 1.0 / faults.ge_r if faults.ge_r > 0.0 else math.inf
