"""Explicit fault schedules: what happens to message #k, decided by a list, not a coin.

Role: the search space for property-based tests and ``python -m
experiments.search``, and what its replays put in the real drivers' client
channels (one ``Links`` per client, as any fault link). ``FaultLink`` draws every
decision from a seeded RNG, so Hypothesis could only search seeds and
probabilities, which shrink to nothing a person can read. Here each link is
told, per message index, to deliver, drop, duplicate or delay that message
(``ScheduledLink``), and a ``FaultSchedule`` adds the server crashes, so a
failing run shrinks to the few actions that break a guarantee, printed as::

    client0 reply: #0 drop; crash before request #1

Message indices count per link and direction, from 0: ``client0 request #2``
is the third message client 0 sends (any attempt of any call), ``client0
reply #0`` the first reply that reaches client 0's link. Crash indices count
request arrivals at the server over all clients, from 0 (see
``transports.sim``). Messages beyond a list are delivered untouched.

A link may also carry one timed fault, a partition window (``Window``), in
the same item: ``client0 reply: partition 225ms-525ms`` cuts every reply to
client 0 sent from 225 ms to 525 ms after the run's start (start inclusive,
end exclusive), by ``transports.faults.partition.Partition``'s own rules (a
lost datagram; a lost TCP transmission that TCP sends again after the heal).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transports.faults import Fate, FaultLink, LinkFaults, Partition, TcpRecovery
from transports.faults.partition import MAX_SECONDS
from transports.links import Links
from transports.sim import CrashPoint

__all__ = [
    "DELIVER",
    "DROP",
    "DUPLICATE",
    "Action",
    "ActionKind",
    "ClientSchedule",
    "FaultSchedule",
    "ScheduledLink",
    "Window",
    "delay",
]

#: Offset of a duplicate's second copy: the same gap as ``FaultSpec.reorder_gap``.
DEFAULT_GAP = LinkFaults().reorder_gap


class ActionKind(enum.Enum):
    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "dup"
    DELAY = "delay"


def _format_duration(seconds: float) -> str:
    # Milliseconds read best; fall back to repr when %g would not round-trip.
    ms = f"{seconds * 1e3:g}ms"
    return ms if _parse_duration(ms) == seconds else f"{seconds!r}s"


def _parse_duration(text: str) -> float:
    if text.endswith("ms"):
        return float(text[:-2]) / 1e3
    if text.endswith("s"):
        return float(text[:-1])
    raise ValueError(f"expected a duration like 20ms or 0.02s, got {text!r}")


@dataclass(frozen=True)
class Action:
    """What a link does with one message; ``seconds`` is only set for DELAY."""

    kind: ActionKind
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.kind is ActionKind.DELAY:
            if not 0.0 < self.seconds <= 60.0:
                raise ValueError(f"a delay must be in (0, 60] s, got {self.seconds}")
        elif self.seconds:
            raise ValueError(f"{self.kind.value} takes no duration")

    def __str__(self) -> str:
        if self.kind is ActionKind.DELAY:
            return f"delay {_format_duration(self.seconds)}"
        return str(self.kind.value)

    @classmethod
    def parse(cls, text: str) -> Action:
        word, _, rest = text.strip().partition(" ")
        kind = ActionKind(word)
        return cls(kind, _parse_duration(rest.strip()) if kind is ActionKind.DELAY else 0.0)


DELIVER = Action(ActionKind.DELIVER)
DROP = Action(ActionKind.DROP)
DUPLICATE = Action(ActionKind.DUPLICATE)


@dataclass(frozen=True)
class Window:
    """A partition of one link: what it sends in ``[start, end)`` (seconds from the run's start)
    is cut."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.start < self.end <= MAX_SECONDS:
            raise ValueError(
                f"a partition window needs 0 <= start < end <= {MAX_SECONDS:g} s, "
                f"got {self.start!r}-{self.end!r}"
            )

    def partition(self) -> Partition:
        """The fault layer's partition for the link that carries this window."""
        return Partition(duration=self.end - self.start, start=self.start)

    def __str__(self) -> str:
        return f"partition {_format_duration(self.start)}-{_format_duration(self.end)}"

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW.fullmatch(text.strip())
        if match is None:
            raise ValueError(
                f"expected 'partition START-END' like partition 0ms-300ms, got {text!r}"
            )
        return cls(_parse_duration(match[1]), _parse_duration(match[2]))


_WINDOW = re.compile(r"partition (\S+?)-(\S+)")


def delay(seconds: float) -> Action:
    """Hold a message back ``seconds``: later messages overtake it (reordering)."""
    return Action(ActionKind.DELAY, seconds)


class ScheduledLink(FaultLink):
    """A ``FaultLink`` whose decision for message #k is ``actions[k]``.

    A subclass, not a lookalike: only ``decide`` differs, so the transport's
    rules are ``FaultLink``'s own. In stream (TCP) mode a drop loses the first
    transmission and TCP recovers as ``tcp`` says (retransmitted after the
    RTO, holding back later messages; or, with ``TcpRecovery.RESET``, the
    connection breaks); duplicates are absorbed and a delayed message holds
    back the ones behind it. ``window``: a partition of this link, timed from
    ``origin`` (the driver's clock; None: this link's first message), cut by
    ``FaultLink``'s partition rules.
    """

    def __init__(
        self,
        actions: Sequence[Action],
        label: str = "scheduled",
        *,
        stream: bool = False,
        gap: float = DEFAULT_GAP,
        tcp: TcpRecovery = TcpRecovery.RETRANSMIT,
        window: Window | None = None,
        origin: float | None = None,
    ) -> None:
        faults = (
            LinkFaults(tcp=tcp)
            if window is None
            else LinkFaults(tcp=tcp, partition=window.partition())
        )
        super().__init__(faults, 0, label, stream=stream, origin=origin)
        self.window = window
        self.actions = tuple(actions)
        self.gap = gap
        self.sent = 0  # index of the next message

    def decide(self) -> Fate:
        index, self.sent = self.sent, self.sent + 1
        action = self.actions[index] if index < len(self.actions) else DELIVER
        kind = action.kind
        return Fate(
            lost=kind is ActionKind.DROP,
            retransmission_lost=_retransmission_arrives,
            offset=action.seconds,
            duplicated=kind is ActionKind.DUPLICATE,
        )

    def __repr__(self) -> str:
        mode = "stream" if self.stream else "datagram"
        listed = [f"#{k} {a}" for k, a in enumerate(self.actions) if a != DELIVER]
        listed += [] if self.window is None else [str(self.window)]
        return f"ScheduledLink([{', '.join(listed)}], label={self.label!r}, {mode})"


def _retransmission_arrives() -> bool:
    """A scheduled drop loses one transmission: TCP's next copy arrives."""
    return False


def _trim(actions: tuple[Action, ...]) -> tuple[Action, ...]:
    # Trailing delivers change nothing: dropping them gives one value per behaviour.
    end = len(actions)
    while end and actions[end - 1] == DELIVER:
        end -= 1
    return actions[:end]


def _describe(what: str, actions: tuple[Action, ...], window: Window | None) -> str | None:
    listed = [f"#{k} {a}" for k, a in enumerate(actions) if a != DELIVER]
    listed += [] if window is None else [str(window)]
    return f"{what}: {', '.join(listed)}" if listed else None


@dataclass(frozen=True)
class ClientSchedule:
    """The actions of one client's two links, by message index, and their partition windows."""

    request: tuple[Action, ...] = ()
    reply: tuple[Action, ...] = ()
    request_window: Window | None = None
    reply_window: Window | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "request", _trim(tuple(self.request)))
        object.__setattr__(self, "reply", _trim(tuple(self.reply)))

    def window(self, direction: str) -> Window | None:
        """The partition window of the ``request`` or ``reply`` link."""
        return self.request_window if direction == "request" else self.reply_window

    def with_actions(self, direction: str, actions: Sequence[Action]) -> ClientSchedule:
        """This plan with the ``request`` or ``reply`` link's actions replaced."""
        if direction == "request":
            return dataclasses.replace(self, request=tuple(actions))
        return dataclasses.replace(self, reply=tuple(actions))

    def with_window(self, direction: str, window: Window | None) -> ClientSchedule:
        """This plan with the ``request`` or ``reply`` link's partition window replaced."""
        if direction == "request":
            return dataclasses.replace(self, request_window=window)
        return dataclasses.replace(self, reply_window=window)

    @property
    def faults(self) -> int:
        """Number of actions other than deliver, plus partition windows."""
        windows = (self.request_window is not None) + (self.reply_window is not None)
        return sum(a != DELIVER for a in self.request + self.reply) + windows


DIRECTIONS = ("request", "reply")  # a ``Links`` pair's order
_ITEM = re.compile(r"client(\d+) (request|reply): (.+)")
_CRASH = re.compile(r"crash (before|after) request #(\d+)")
_AT = re.compile(r"#(\d+) (.+)")


@dataclass(frozen=True)
class FaultSchedule:
    """Per-client link actions plus server crashes, as one readable value.

    ``crashes``: request arrival indices at which the server crashes *before*
    applying the arriving request (its volatile state is lost, then the
    restarted server handles it). ``crashes_after_apply``: indices at which
    it crashes after applying the request and before replying (the reply is
    lost too). An arrival may have at most one crash point.
    """

    clients: tuple[ClientSchedule, ...] = ()
    crashes: frozenset[int] = field(default_factory=frozenset)
    crashes_after_apply: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        clients = tuple(self.clients)
        while clients and clients[-1] == ClientSchedule():
            clients = clients[:-1]
        object.__setattr__(self, "clients", clients)
        object.__setattr__(self, "crashes", frozenset(self.crashes))
        object.__setattr__(self, "crashes_after_apply", frozenset(self.crashes_after_apply))
        if any(k < 0 for k in self.crashes | self.crashes_after_apply):
            raise ValueError("crash indices are request arrival numbers, from 0")
        both = self.crashes & self.crashes_after_apply
        if both:
            raise ValueError(f"arrivals {sorted(both)} have two crash points; choose one")

    # -- use -----------------------------------------------------------------

    def client(self, index: int) -> ClientSchedule:
        return self.clients[index] if index < len(self.clients) else ClientSchedule()

    def links(
        self,
        clients: int,
        *,
        stream: bool = False,
        tcp: TcpRecovery = TcpRecovery.RETRANSMIT,
        origin: float | None = None,
    ) -> list[Links]:
        """Fresh links for ``clients`` clients: ``simulate(links=...)``, or one
        ``Links`` per client channel of a real driver (``TcpChannel``, ``UdpChannel``).
        ``origin``: the driver's time partition windows count from (0 in the simulator)."""
        return [
            Links(*(self.link(i, d, stream=stream, tcp=tcp, origin=origin) for d in DIRECTIONS))
            for i in range(clients)
        ]

    def link(
        self,
        client: int,
        direction: str,
        *,
        stream: bool = False,
        tcp: TcpRecovery = TcpRecovery.RETRANSMIT,
        origin: float | None = None,
    ) -> ScheduledLink:
        """Client ``client``'s ``request`` or ``reply`` link."""
        plan = self.client(client)
        return ScheduledLink(
            getattr(plan, direction),
            f"client{client}/{direction}",
            stream=stream,
            tcp=tcp,
            window=plan.window(direction),
            origin=origin,
        )

    def crash_at(self, arrival: int) -> CrashPoint | None:
        """The crash policy for ``simulate(crashes=...)``."""
        if arrival in self.crashes:
            return CrashPoint.BEFORE_APPLY
        if arrival in self.crashes_after_apply:
            return CrashPoint.AFTER_APPLY
        return None

    @property
    def faults(self) -> int:
        """Link actions other than deliver, plus crashes: the size of the schedule."""
        crashes = len(self.crashes) + len(self.crashes_after_apply)
        return sum(c.faults for c in self.clients) + crashes

    # -- text ----------------------------------------------------------------

    def __str__(self) -> str:
        parts: list[str] = []
        for i, plan in enumerate(self.clients):
            for what in DIRECTIONS:
                text = _describe(f"client{i} {what}", getattr(plan, what), plan.window(what))
                if text is not None:
                    parts.append(text)
        parts += [f"crash before request #{k}" for k in sorted(self.crashes)]
        parts += [f"crash after request #{k}" for k in sorted(self.crashes_after_apply)]
        return "; ".join(parts) if parts else "no faults"

    def __repr__(self) -> str:
        return f"FaultSchedule.parse({str(self)!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # The IPython pretty-printer hook, which Hypothesis's failure report
        # uses: without it a dataclass is dumped field by field.
        printer.text(repr(self))

    @classmethod
    def parse(cls, text: str) -> FaultSchedule:
        """Inverse of ``str``: ``parse(str(s)) == s`` for every schedule."""
        requests: dict[int, dict[int, Action]] = {}
        replies: dict[int, dict[int, Action]] = {}
        windows: dict[tuple[int, str], Window] = {}
        before: set[int] = set()
        after: set[int] = set()
        stripped = text.strip()
        items = [] if stripped == "no faults" else [p.strip() for p in stripped.split(";")]
        for item in items:
            if crash := _CRASH.fullmatch(item):
                (before if crash[1] == "before" else after).add(int(crash[2]))
                continue
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"cannot parse schedule item {item!r}")
            table = requests if match[2] == "request" else replies
            client = _bounded(int(match[1]), "client")
            actions = table.setdefault(client, {})
            for entry in match[3].split(","):
                if entry.strip().startswith("partition"):
                    if (client, match[2]) in windows:
                        raise ValueError(f"client{client} {match[2]}: one partition per link")
                    windows[client, match[2]] = Window.parse(entry)
                    continue
                at = _AT.fullmatch(entry.strip())
                if at is None:
                    raise ValueError(
                        f"expected '#k action' or 'partition START-END', got {entry.strip()!r}"
                    )
                actions[_bounded(int(at[1]), "message index")] = Action.parse(at[2])
        n = max([*requests, *replies], default=-1) + 1
        return cls(
            tuple(
                ClientSchedule(
                    _dense(requests.get(i, {})),
                    _dense(replies.get(i, {})),
                    windows.get((i, "request")),
                    windows.get((i, "reply")),
                )
                for i in range(n)
            ),
            frozenset(before),
            frozenset(after),
        )


#: Largest client number and message index ``parse`` accepts: a schedule is
#: stored densely, so ``#99999999999`` would otherwise take all the memory.
MAX_PARSED_INDEX = 9999


def _bounded(value: int, what: str) -> int:
    if value > MAX_PARSED_INDEX:
        raise ValueError(f"{what} {value} is too large (at most {MAX_PARSED_INDEX})")
    return value


def _dense(actions: dict[int, Action]) -> tuple[Action, ...]:
    size = max(actions, default=-1) + 1
    return tuple(actions.get(k, DELIVER) for k in range(size))
