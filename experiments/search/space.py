"""The search space of fault schedules, as Hypothesis strategies, and 1-minimality.

Role: what ``python -m experiments.search`` and tests/property/test_fault_schedules.py
share. A schedule is drawn as a short list of fault *events*, each naming its
own target, rather than as dense per-link action lists: deleting an event
removes exactly one fault without renumbering the others. Each event is two
sampled_from draws (target, action), so with the list's "one more?" flag and
the link-or-crash branch it spans four choices: Hypothesis's shrinker deletes
runs of at most five choices, and a longer event could never be deleted from
the middle of the list, leaving shrunk schedules that are not minimal.

A partition is one more event: ((client, direction), window), the window
drawn from ``SearchSpace.windows``, a short list ordered simplest first
(shortest, then earliest), so that Hypothesis shrinks a partition towards a
shorter one, or deletes it. Whether a window breaks a property is not
monotonic in its place in that list, so ``one_minimal`` finishes the job:
it also replaces a window by the shortest grid window inside it (a later
start, an earlier heal) that still fails. A link has at most one window.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from hypothesis import strategies as st

from transports.schedule import (
    DELIVER,
    DROP,
    DUPLICATE,
    Action,
    ClientSchedule,
    FaultSchedule,
    Window,
)
from transports.sim import CrashPoint

LinkFault = tuple[tuple[int, str, int], Action]  # (client, direction, message index), action
Crash = tuple[int, CrashPoint]  # arrival index, crash point
Cut = tuple[tuple[int, str], Window]  # (client, direction), partition window
Event = LinkFault | Crash | Cut

DIRECTIONS = ("reply", "request")  # simplest first: a lost reply is the classic story


@dataclass(frozen=True)
class SearchSpace:
    """Which schedules a search may draw: targets, actions, crash points, sizes."""

    actions: tuple[Action, ...] = (DROP, DUPLICATE)
    crash_points: tuple[CrashPoint, ...] = ()
    directions: tuple[str, ...] = DIRECTIONS
    max_clients: int = 2
    max_faults: int = 5  # link faults and crashes per schedule
    max_index: int = 5  # link faults hit messages 0..max_index of a link
    max_arrival: int = 8  # crashes hit request arrivals 0..max_arrival
    windows: tuple[Window, ...] = ()  # partition windows a link may get, simplest first

    def __post_init__(self) -> None:
        if not self.actions and not self.crash_points and not self.windows:
            raise ValueError("the search needs at least one fault kind")
        if (self.actions or self.windows) and not self.directions:
            raise ValueError("link faults need at least one direction (request, reply)")
        if not set(self.directions) <= set(DIRECTIONS):
            raise ValueError(f"directions are {' and '.join(DIRECTIONS)}")
        if min(self.max_clients, self.max_faults) < 1 or min(self.max_index, self.max_arrival) < 0:
            raise ValueError("max_clients and max_faults must be at least 1")

    @property
    def targets(self) -> list[tuple[int, str, int]]:
        """Every (client, direction, index), simplest first (sampled_from shrinks to the front)."""
        order = [d for d in DIRECTIONS if d in self.directions]
        return [
            (client, direction, index)
            for client in range(self.max_clients)
            for index in range(self.max_index + 1)
            for direction in order
        ]

    @property
    def cut_targets(self) -> list[tuple[int, str]]:
        """Every (client, direction) a partition window may cut, simplest first."""
        order = [d for d in DIRECTIONS if d in self.directions]
        return [(client, direction) for client in range(self.max_clients) for direction in order]

    def schedules(self) -> st.SearchStrategy[FaultSchedule]:
        """Up to ``max_faults`` link faults, partitions and crashes, at most one per target."""
        options: list[st.SearchStrategy[Event]] = []
        if self.actions:
            options.append(st.tuples(st.sampled_from(self.targets), st.sampled_from(self.actions)))
        if self.windows:
            cuts = st.tuples(st.sampled_from(self.cut_targets), st.sampled_from(self.windows))
            options.append(cuts)
        if self.crash_points:
            arrival = st.integers(0, self.max_arrival)
            options.append(st.tuples(arrival, st.sampled_from(self.crash_points)))
        event = options[0] if len(options) == 1 else st.one_of(*options)
        # Unique targets: two events on one message would make a fault that only
        # disappears when both are deleted at once.
        return st.lists(event, max_size=self.max_faults, unique_by=_target).map(
            lambda events: to_schedule(events, self.max_clients)
        )

    def clients(self) -> st.SearchStrategy[int]:
        return st.integers(1, self.max_clients)

    def single_faults(self, clients: int) -> Iterator[FaultSchedule]:
        """Every schedule with exactly one fault, for ``clients`` clients."""
        for (client, direction, index), action in itertools.product(self.targets, self.actions):
            if client < clients:
                yield to_schedule([((client, direction, index), action)], self.max_clients)
        for (client, direction), window in itertools.product(self.cut_targets, self.windows):
            if client < clients:
                yield to_schedule([((client, direction), window)], self.max_clients)
        for arrival, point in itertools.product(range(self.max_arrival + 1), self.crash_points):
            yield to_schedule([(arrival, point)], self.max_clients)


def partition_windows(step: float, edges: int) -> tuple[Window, ...]:
    """Windows between the edges 0, step/2, 3 step/2, ... (``edges`` of them after 0).

    Edges halfway between a fixed-timeout client's retries (step = its timeout),
    so that no message is sent at the instant a window opens or heals and a
    real run cuts what the simulator cuts. Shortest first, then earliest first.
    """
    points = [0.0, *(round((k - 0.5) * step, 6) for k in range(1, edges + 1))]
    windows = [Window(a, b) for i, a in enumerate(points) for b in points[i + 1 :]]
    return tuple(sorted(windows, key=_simplest))


def _simplest(window: Window) -> tuple[float, float]:
    return (round(window.end - window.start, 9), window.start)  # no float noise in ties


def _target(event: Event) -> object:
    return event[0]  # (client, direction, index), (client, direction) or an arrival index


def to_schedule(events: Sequence[Event], max_clients: int) -> FaultSchedule:
    """The ``FaultSchedule`` of a list of events."""
    table: dict[tuple[int, str], dict[int, Action]] = {}
    windows: dict[tuple[int, str], Window] = {}
    crashes: dict[int, CrashPoint] = {}
    for item in events:
        if isinstance(item[1], CrashPoint):
            crashes[item[0]] = item[1]
        elif isinstance(item[1], Window):
            (client, direction), window = item
            windows[client, direction] = window
        else:
            (client, direction, index), action = item
            table.setdefault((client, direction), {})[index] = action
    clients = tuple(
        ClientSchedule(
            _dense(table.get((i, "request"), {})),
            _dense(table.get((i, "reply"), {})),
            windows.get((i, "request")),
            windows.get((i, "reply")),
        )
        for i in range(max_clients)
    )
    return FaultSchedule(
        clients,
        frozenset(k for k, p in crashes.items() if p is CrashPoint.BEFORE_APPLY),
        frozenset(k for k, p in crashes.items() if p is CrashPoint.AFTER_APPLY),
    )


def _dense(actions: dict[int, Action]) -> tuple[Action, ...]:
    return tuple(actions.get(k, DELIVER) for k in range(max(actions, default=-1) + 1))


def link_faults(schedule: FaultSchedule) -> list[tuple[int, str, int, Action]]:
    """(client, direction, index, action) of every non-deliver action."""
    return [
        (i, direction, k, action)
        for i, plan in enumerate(schedule.clients)
        for direction, actions in (("request", plan.request), ("reply", plan.reply))
        for k, action in enumerate(actions)
        if action != DELIVER
    ]


def without_each_fault(schedule: FaultSchedule) -> Iterator[FaultSchedule]:
    """Every schedule with exactly one of ``schedule``'s faults removed."""
    for k in sorted(schedule.crashes):
        yield replace(schedule, crashes=schedule.crashes - {k})
    for k in sorted(schedule.crashes_after_apply):
        yield replace(schedule, crashes_after_apply=schedule.crashes_after_apply - {k})
    for i, direction, k, _ in link_faults(schedule):
        plan = schedule.clients[i]
        actions: tuple[Action, ...] = getattr(plan, direction)
        cleared = (*actions[:k], DELIVER, *actions[k + 1 :])
        clients = list(schedule.clients)
        clients[i] = plan.with_actions(direction, cleared)
        yield replace(schedule, clients=tuple(clients))
    for i, plan in enumerate(schedule.clients):
        for direction in ("request", "reply"):
            if plan.window(direction) is not None:
                clients = list(schedule.clients)
                clients[i] = plan.with_window(direction, None)
                yield replace(schedule, clients=tuple(clients))


def narrower_windows(schedule: FaultSchedule, windows: Sequence[Window]) -> Iterator[FaultSchedule]:
    """``schedule`` with one partition window replaced by a shorter one of ``windows``
    inside it (a later start, an earlier heal, or both), shortest first."""
    for i, plan in enumerate(schedule.clients):
        for direction in ("request", "reply"):
            current = plan.window(direction)
            if current is None:
                continue
            for window in sorted(windows, key=_simplest):
                inside = current.start <= window.start and window.end <= current.end
                if inside and window != current:
                    clients = list(schedule.clients)
                    clients[i] = plan.with_window(direction, window)
                    yield replace(schedule, clients=tuple(clients))


def one_minimal(
    schedule: FaultSchedule,
    fails: Callable[[FaultSchedule], bool],
    windows: Sequence[Window] = (),
) -> FaultSchedule:
    """Remove single faults, then narrow partition windows to others of ``windows``,
    while the failure persists: a 1-minimal failing schedule whose windows no
    shorter window inside them can replace.

    Hypothesis's shrinker usually removes the faults on its own; this pass makes
    it a guarantee (each step removes a fault or shortens a window, so it ends).
    """
    while True:
        smaller = next((s for s in without_each_fault(schedule) if fails(s)), None)
        if smaller is None:
            smaller = next((s for s in narrower_windows(schedule, windows) if fails(s)), None)
        if smaller is None:
            return schedule
        schedule = smaller
