"""The fault spec: every fault knob, parsed from one string and split by who injects it.

``FaultSpec`` is what a user writes (``"loss=0.1,delay=2ms,app_fail=0.05"``);
``LinkFaults`` is its link part (what ``FaultLink`` takes: loss, duplication,
reordering, delay, corruption, burst loss, resets, and how TCP recovers from a
loss), ``ServerFaults`` its server part (application failure and crash, which
the server programs inject).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from transports.faults.partition import KEYS as PARTITION_KEYS
from transports.faults.partition import NO_PARTITION, Partition, PartitionError

#: Longest accepted duration (delay, jitter, gap), in seconds: anything longer is
#: a typo (``delay=2`` meant as milliseconds) rather than a network.
MAX_DURATION = 60.0


class TcpRecovery(enum.Enum):
    """What a stream (TCP) link does with a message the network loses (spec key ``tcp``)."""

    #: Retransmit it as Linux does (tail loss probe, then RTO back-off); every
    #: later message waits behind it. The connection breaks only where TCP
    #: gives up (``transports.tcp_model``).
    RETRANSMIT = "retransmit"
    #: Break the connection at the lost message (the model before retransmission).
    RESET = "reset"


#: The spec key of ``TcpRecovery``: a word, not a number, so it stands apart.
_TCP_KEY = "tcp"
_TCP_CHOICES = ", ".join(mode.value for mode in TcpRecovery)

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
_ALLOWED_KEYS = ", ".join([*_KEY_TO_FIELD, _TCP_KEY, *PARTITION_KEYS])
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


def _parse_tcp(text: str) -> TcpRecovery:
    try:
        return TcpRecovery(text)
    except ValueError:
        raise FaultSpecError(f"{_TCP_KEY}: expected one of {_TCP_CHOICES}, got {text!r}") from None


def _check_tcp(value: object) -> None:
    if not isinstance(value, TcpRecovery):
        raise FaultSpecError(f"{_TCP_KEY}: expected one of {_TCP_CHOICES}, got {value!r}")


def _check_partition(value: object) -> None:
    if not isinstance(value, Partition):
        raise FaultSpecError(f"partition: expected a Partition, got {value!r}")


def _parse_partition(items: dict[str, str]) -> Partition:
    try:
        return Partition.from_items(items, _parse_duration)
    except PartitionError as err:
        raise FaultSpecError(str(err)) from None


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
    tcp = getattr(obj, "tcp", TcpRecovery.RETRANSMIT)
    if tcp is not TcpRecovery.RETRANSMIT:
        items.append(f"{_TCP_KEY}={tcp.value}")
    partition = getattr(obj, "partition", None)
    if partition is not None:
        items += partition.items(_format_duration)
    return ",".join(items) if items else FaultSpec.NONE


@dataclass(frozen=True)
class LinkFaults:
    """What the network does to messages: the link part of a ``FaultSpec``; all off by default.

    Probabilities are per message. Durations are in seconds. ``reset`` and
    ``tcp`` only act in stream (TCP) mode. ``str()`` gives its spec string.
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
    tcp: TcpRecovery = TcpRecovery.RETRANSMIT
    partition: Partition = NO_PARTITION

    def __post_init__(self) -> None:
        _check_values(self, _LINK_KEYS)
        _check_tcp(self.tcp)
        _check_partition(self.partition)

    def __str__(self) -> str:
        return _spec_text(self, _LINK_KEYS)

    @property
    def gilbert_elliott(self) -> bool:
        """True when the Gilbert-Elliott burst-loss chain is active (``ge_p > 0``)."""
        return self.ge_p > 0.0

    @property
    def is_zero(self) -> bool:
        """True when a ``FaultLink`` with these faults passes every message untouched."""
        active = any(getattr(self, name) for name in _ACTIVE_LINK_FIELDS)
        return not active and self.partition.is_zero


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
    tcp: TcpRecovery = TcpRecovery.RETRANSMIT
    partition: Partition = NO_PARTITION

    NONE: ClassVar[str] = "none"

    def __post_init__(self) -> None:
        # Validate here, not only in parse(), so dataclasses.replace and direct
        # construction cannot build an invalid spec either.
        _check_values(self, _ALL_KEYS)
        _check_tcp(self.tcp)
        _check_partition(self.partition)

    @classmethod
    def of(cls, link: LinkFaults | None = None, server: ServerFaults | None = None) -> FaultSpec:
        """The spec with these link and server faults (none for a part left out)."""
        # Field by field, not dataclasses.asdict: that would turn the Partition into a dict.
        values = _fields(link or LinkFaults())
        values.update(_fields(server or ServerFaults()))
        return cls(**values)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse ``"loss=0.1,delay=2ms,..."``; ``""`` or ``"none"`` means no faults."""
        stripped = text.strip()
        if not stripped or stripped.lower() == cls.NONE:
            return cls()
        values: dict[str, float] = {}
        tcp: TcpRecovery | None = None
        partition: dict[str, str] = {}
        for raw_item in stripped.split(","):
            item = raw_item.strip()
            key, sep, raw_value = item.partition("=")
            key, raw_value = key.strip(), raw_value.strip()
            if not sep or not key or not raw_value:
                raise FaultSpecError(
                    f"malformed item {item!r} in fault spec {text!r}: expected key=value "
                    f"(keys: {_ALLOWED_KEYS})"
                )
            if key == _TCP_KEY:
                if tcp is not None:
                    raise FaultSpecError(f"duplicate fault key {key!r} in {text!r}")
                tcp = _parse_tcp(raw_value)
                continue
            if key in PARTITION_KEYS:
                if key in partition:
                    raise FaultSpecError(f"duplicate fault key {key!r} in {text!r}")
                partition[key] = raw_value
                continue
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
        return cls(
            **values, tcp=tcp or TcpRecovery.RETRANSMIT, partition=_parse_partition(partition)
        )

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
        return LinkFaults(
            **{name: getattr(self, name) for _, name in _LINK_KEYS},
            tcp=self.tcp,
            partition=self.partition,
        )

    @property
    def server(self) -> ServerFaults:
        """The server faults (application failure, crash), for the server programs."""
        return ServerFaults(**{name: getattr(self, name) for _, name in _SERVER_KEYS})

    @property
    def is_zero(self) -> bool:
        """True when no fault of any kind is configured (link, application or crash)."""
        return self.link.is_zero and self.server.is_zero


def _fields(obj: object) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(FaultSpec)}
