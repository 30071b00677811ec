"""Seeded, sans-I/O fault layer: what the network does to each message.

Role: decide, for one direction of one link, whether a message is lost,
duplicated, held back (reordered), delayed, corrupted, or (stream/TCP mode)
breaks the connection. The decisions are pure and synchronous: ``FaultLink``
never reads a clock or touches a socket; it takes ``now`` and returns a
``Verdict`` that a driver (asyncio TCP/UDP, or the virtual-time simulator)
carries out. One spec string (``FaultSpec``) configures every fault, and one
seed reproduces every decision. The model is documented in ``FAULTS.md``.
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
    "Verdict",
    "corrupt_bits",
    "expected_delivery",
    "expected_intact",
    "label_for",
    "link_pair",
    "mean_burst_length",
    "should_fail",
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
_DURATION_FIELDS = frozenset({"reorder_gap", "delay", "jitter"})
_LINK_FIELDS = ("loss", "dup", "reorder", "delay", "jitter", "corrupt", "ge_p", "reset")
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


@dataclass(frozen=True)
class FaultSpec:
    """Every fault knob, in one immutable value; all off by default.

    Probabilities are per message. Durations are in seconds. ``app_fail``,
    ``crash`` are carried for the bank and the crash component; ``FaultLink``
    ignores them. ``reset`` only acts in stream (TCP) mode.
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
        for key, name in _KEY_TO_FIELD.items():
            value = getattr(self, name)
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
        items = []
        for key, name in _KEY_TO_FIELD.items():
            value = getattr(self, name)
            if value == _DEFAULTS[name]:
                continue
            text = _format_duration(value) if name in _DURATION_FIELDS else _format_number(value)
            items.append(f"{key}={text}")
        return ",".join(items) if items else self.NONE

    def __str__(self) -> str:
        return self.to_spec()

    def with_loss(self, loss: float) -> FaultSpec:
        """This spec with another independent loss probability (for sweeps)."""
        return dataclasses.replace(self, loss=loss)

    @property
    def gilbert_elliott(self) -> bool:
        """True when the Gilbert-Elliott burst-loss chain is active (``ge_p > 0``)."""
        return self.ge_p > 0.0

    @property
    def is_link_zero(self) -> bool:
        """True when a ``FaultLink`` with this spec passes every message untouched."""
        return not any(getattr(self, name) for name in _LINK_FIELDS)

    @property
    def is_zero(self) -> bool:
        """True when no fault of any kind is configured (link, application or crash)."""
        return self.is_link_zero and not (self.app_fail or self.crash)


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


def should_fail(spec: FaultSpec, rng: random.Random) -> bool:
    """The bank's application-failure draw: always one draw, true with probability app_fail."""
    return rng.random() < spec.app_fail


class FaultLink:
    """Fault decisions for one direction of one link (one client's connection or datagram flow).

    Every call to ``apply`` makes the same eight draws from a private RNG seeded
    with ``f"{seed}/{label}"``, whatever faults are enabled ("common random
    numbers"): switching ``dup`` on does not change which messages are lost, and
    the messages lost at ``loss=0.1`` are a subset of those lost at ``loss=0.2``.
    """

    def __init__(self, spec: FaultSpec, seed: int, label: str, *, stream: bool = False) -> None:
        self.spec = spec
        self.seed = seed
        self.label = label
        self.stream = stream
        self.counters: collections.Counter[str] = collections.Counter()
        # str seeds are hashed with SHA-512 by random.Random: stable across runs,
        # unlike hash(), which PYTHONHASHSEED randomises.
        self._rng = random.Random(f"{seed}/{label}")
        self._bad = False  # Gilbert-Elliott state: False = good
        self._fifo_floor = -math.inf  # stream mode: last delivery time on this connection
        self._passthrough = spec.is_link_zero
        #: Every message is delivered at once, untouched (all probabilities and
        #: delays zero, and ``apply`` not overridden): drivers may then skip
        #: building a ``Verdict`` and call ``count_passthrough`` instead.
        self.passthrough = self._passthrough and type(self).apply is FaultLink.apply

    def apply(self, data: bytes, now: float) -> Verdict:
        """Decide the fate of one message sent at ``now``."""
        self.counters["messages"] += 1
        if self._passthrough:
            # A link's spec never changes, so skipping the draws cannot shift any
            # later decision of this link, and other links have their own RNGs.
            return Verdict((Delivery(now, data),), False, ())
        spec = self.spec
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

        if spec.ge_p > 0.0:
            self._bad = (u_state >= spec.ge_r) if self._bad else (u_state < spec.ge_p)
        lost = u_loss < (spec.ge_loss if self._bad else spec.loss)
        events: list[str] = []

        if self.stream:
            broken = u_reset < spec.reset
            if lost or broken:
                # TCP hides a single loss by retransmitting; a message the model
                # loses stands for a connection that gave up: it breaks here.
                self._fifo_floor = -math.inf  # the next message rides a new connection
                return self._record(Verdict((), True, ("drop", "reset") if lost else ("reset",)))
        elif lost:
            return self._record(Verdict((), False, ("drop",)))

        offset = spec.delay + spec.jitter * (2.0 * u_jitter - 1.0)
        at = now + offset if offset > 0.0 else now
        reordered = u_reorder < spec.reorder
        duplicated = u_dup < spec.dup
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
                at += spec.reorder_gap
                events.append("reorder")
            if duplicated:
                events.append("dup")
        if u_corrupt < spec.corrupt and data:
            # A sub-RNG keeps the main draw count fixed however many bits flip.
            bit_rng = random.Random(corrupt_seed)
            data = corrupt_bits(data, bit_rng, min(bit_rng.randint(1, 3), len(data) * 8))
            events.append("corrupt")
        if offset > 0.0:
            events.append("delay")

        first = Delivery(at, data)
        if duplicated and not self.stream:
            # Both copies carry the same bytes: duplication happens after the damage.
            deliveries: tuple[Delivery, ...] = (first, Delivery(at + spec.reorder_gap, data))
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
        return f"FaultLink({self.spec}, seed={self.seed}, label={self.label!r}, {mode})"


def link_pair(
    spec: FaultSpec, seed: int, role: str, index: int, *, stream: bool = False
) -> tuple[FaultLink, FaultLink]:
    """The (REQUEST, REPLY) links of one client, labelled with ``label_for``."""
    return (
        FaultLink(spec, seed, label_for(role, index, Direction.REQUEST), stream=stream),
        FaultLink(spec, seed, label_for(role, index, Direction.REPLY), stream=stream),
    )


# --- analytic helpers -------------------------------------------------------


def stationary_loss_rate(spec: FaultSpec) -> float:
    """Long-run fraction of messages the network loses (loss or Gilbert-Elliott)."""
    if not spec.gilbert_elliott:
        return spec.loss
    pi_bad = spec.ge_p / (spec.ge_p + spec.ge_r)
    return (1.0 - pi_bad) * spec.loss + pi_bad * spec.ge_loss


def expected_delivery(spec: FaultSpec, *, stream: bool = False) -> float:
    """Probability one message arrives at all (possibly corrupted).

    In stream mode a ``reset`` draw also prevents delivery; it is independent of
    the loss draw, so the probabilities multiply.
    """
    delivered = 1.0 - stationary_loss_rate(spec)
    return delivered * (1.0 - spec.reset) if stream else delivered


def expected_intact(spec: FaultSpec, *, stream: bool = False) -> float:
    """Probability one message arrives and passes the receiver's CRC.

    A duplicate carries the same bytes as the original, so it does not help.
    """
    return expected_delivery(spec, stream=stream) * (1.0 - spec.corrupt)


def mean_burst_length(spec: FaultSpec) -> float:
    """Mean number of consecutive messages spent in the bad state: ``1 / ge_r``.

    This is the mean loss-burst length when ``ge_loss = 1`` and ``loss = 0``;
    without Gilbert-Elliott, independent loss gives ``1 / (1 - loss)``.
    """
    if not spec.gilbert_elliott:
        return 1.0 / (1.0 - spec.loss) if spec.loss < 1.0 else math.inf
    return 1.0 / spec.ge_r if spec.ge_r > 0.0 else math.inf
