"""A timeline of one simulated run: what each link did to each message, what the server did.

Role: the "how" of an explanation. ``TracedLink`` is a ``ScheduledLink`` that
notes each message's fate; ``TracedEndpoint`` a ``ServerEndpoint`` that notes
each arrival (admitted, answered from the reply cache, dropped) and each
execution. Only the explanation's run is traced: a search runs untraced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from transports.admission import Peer
from transports.endpoint import ServerEndpoint
from transports.faults import TcpRecovery, Verdict
from transports.links import Links
from transports.schedule import DELIVER, Action, FaultSchedule, ScheduledLink, Window
from transports.semantics import ReplyCache, Semantics
from transports.service import Service
from transports.sim import CrashPoint, CrashPolicy
from transports.wire import Request, WireError, decode_message


@dataclass(frozen=True)
class Step:
    at: float  # virtual seconds
    text: str


# Link events the action already says.
_SAID = frozenset({"drop", "dup", "delay"})
_WORDS = {
    "retransmitted": "retransmitted by TCP after its RTO",
    "fifo_hold": "held behind an earlier message",
    "absorbed_dup": "the copy absorbed by TCP",
    "absorbed_reorder": "TCP keeps the order",
    "reset": "connection reset",
    "gave_up": "TCP gave up",
    "partition": "cut by the partition",
}
_CRASH = {
    CrashPoint.BEFORE_APPLY: " (the server crashed and restarted as it arrived: "
    "its reply cache is gone)",
    CrashPoint.AFTER_APPLY: " (the server will crash after applying it: the reply is lost)",
}


def _name(data: bytes) -> str:
    try:
        message = decode_message(data)
    except WireError:
        return "an undecodable message"
    kind = "request" if isinstance(message, Request) else "reply"
    return f"{kind} {message.id} attempt {message.attempt}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


class TracedLink(ScheduledLink):
    def __init__(
        self,
        actions: Sequence[Action],
        label: str,
        steps: list[Step],
        *,
        stream: bool,
        tcp: TcpRecovery,
        window: Window | None = None,
    ) -> None:
        super().__init__(actions, label, stream=stream, tcp=tcp, window=window, origin=0.0)
        self.steps = steps
        if window is not None:
            ends = f"until {_ms(window.end)}"
            steps.append(Step(window.start, f"{label}: partition begins, cuts all it sends {ends}"))
            steps.append(Step(window.end, f"{label}: partition heals"))

    def apply(self, data: bytes, now: float) -> Verdict:
        index = self.sent
        verdict = super().apply(data, now)
        action = self.actions[index] if index < len(self.actions) else DELIVER
        if verdict.reset:
            fate = "the connection breaks"
        elif not verdict.deliveries:
            fate = "lost"
        else:
            fate = "delivered at " + ", ".join(_ms(d.at) for d in verdict.deliveries)
        events = [_WORDS.get(e, e) for e in verdict.events if e not in _SAID]
        if events:
            fate = f"{fate} ({', '.join(events)})"
        if action != DELIVER:
            fate = f"{action}: {fate}"
        self.steps.append(Step(now, f"{self.label} #{index}: {_name(data)}, {fate}"))
        return verdict


def traced_links(
    schedule: FaultSchedule, clients: int, steps: list[Step], *, stream: bool, tcp: TcpRecovery
) -> list[Links]:
    """``schedule.links`` (timed from 0), each link noting its messages in ``steps``."""

    def traced(i: int, direction: str) -> TracedLink:
        plan = schedule.client(i)
        label = f"client{i}/{direction}"
        window = plan.window(direction)
        actions = getattr(plan, direction)
        return TracedLink(actions, label, steps, stream=stream, tcp=tcp, window=window)

    return [Links(traced(i, "request"), traced(i, "reply")) for i in range(clients)]


class TracedEndpoint(ServerEndpoint):
    """Notes each arrival and execution; crashes are the simulator's (see ``crashes``)."""

    def __init__(
        self,
        service: Service,
        semantics: Semantics,
        crashes: CrashPolicy,
        steps: list[Step],
        rows: Callable[[], int],
        reply_cache: ReplyCache | None = None,
    ) -> None:
        super().__init__(service, semantics, reply_cache)
        self.crashes = crashes
        self.steps = steps
        self.rows = rows  # how many rows the ledger holds
        self.arrivals = 0

    def receive(
        self, data: bytes, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> Request | bytes | None:
        arrival, self.arrivals = self.arrivals, self.arrivals + 1
        point = self.crashes(arrival)
        crash = "" if point is None else _CRASH[point]
        received = super().receive(data, now, budget, peer)
        if isinstance(received, Request):
            done = "admitted"
        elif received is None:
            done = "dropped (the same request is in progress)"
        else:
            done = "answered at once (reply cache)"
        self.steps.append(Step(now, f"server arrival #{arrival}: {_name(data)}, {done}{crash}"))
        return received

    def complete(
        self, request: Request, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> bytes | None:
        before = self.rows()
        reply = super().complete(request, now, budget, peer)
        added = self.rows() - before
        applied = f"ledger row {before + 1} written" if added else "no ledger row written"
        self.steps.append(
            Step(now, f"server executes {request.id} attempt {request.attempt}: {applied}")
        )
        return reply


def timeline_lines(steps: Sequence[Step]) -> list[str]:
    """The steps in time order (stable: same-time steps keep their order)."""
    return [f"{_ms(s.at):>10}  {s.text}" for s in sorted(steps, key=lambda s: s.at)]
