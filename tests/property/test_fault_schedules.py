"""Hypothesis searches explicit fault schedules on the simulator and shrinks failures.

Each example is a small bank workload (1-2 clients, a few deposits) run by
``simulate`` over ``ScheduledLink``s plus server crashes from a
``FaultSchedule``, then audited against a fresh SQLite ledger. The
strategies, the search loop and the run come from ``experiments.search``
(the same code ``python -m experiments.search`` runs). Tests of the form
"the search finds X" search with a check that reports a violation and
assert on the *shrunk* schedule: its size, its shape, that removing any one
of its faults makes the failure go away (1-minimal), and that Hypothesis's
report prints it readably.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from experiments.search.bank import BankTemplate, Model, ScheduleRun, Workload, run_in_sim
from experiments.search.finder import SEARCH, Found, find
from experiments.search.space import (
    Event,
    SearchSpace,
    link_faults,
    partition_windows,
    to_schedule,
    without_each_fault,
)
from tests.property.budget import examples
from transports.faults import TcpRecovery
from transports.retry import RetryPolicy
from transports.schedule import (
    DELIVER,
    DROP,
    DUPLICATE,
    Action,
    ActionKind,
    ClientSchedule,
    FaultSchedule,
    ScheduledLink,
    Window,
    delay,
)
from transports.semantics import Semantics
from transports.sim import CrashPoint

OPS = 3  # deposits per client
MAX_CLIENTS = 2
TIMEOUT = 0.010  # fixed retry timeout, virtual seconds
# Enough attempts that every call ends ok under any schedule drawn below (each
# of at most MAX_FAULTS faults costs a call at most two attempts): "unknown" is a bug.
MAX_ATTEMPTS = 20
MAX_FAULTS = 5  # link faults and crashes per schedule
MAX_INDEX = 5  # link faults hit messages 0..MAX_INDEX of a link
MAX_ARRIVAL = 8  # crashes hit request arrivals 0..MAX_ARRIVAL
# Shorter and longer than the retry timeout, and longer than a whole call.
DELAYS = (0.002, 0.015, 0.050)
SERVICE_TIMES = (0.0, 0.015)  # 15 ms > timeout: retries arrive while "in progress"

# -- strategies (experiments.search.space, shared with python -m experiments.search) --

TARGETS = SearchSpace(max_clients=MAX_CLIENTS, max_index=MAX_INDEX).targets
DELAY_ACTIONS = [delay(d) for d in DELAYS]
DROPS = [DROP]
NO_DUP_ACTIONS = [DROP, *DELAY_ACTIONS]
ACTIONS = [DROP, DUPLICATE, *DELAY_ACTIONS]


#: Partition windows on the search's grid (edges halfway between the retries).
WINDOWS = partition_windows(TIMEOUT, 9)


def space(
    actions: Sequence[Action] = ACTIONS,
    crash_points: Sequence[CrashPoint] = (),
    windows: Sequence[Window] = (),
) -> SearchSpace:
    return SearchSpace(
        tuple(actions),
        tuple(crash_points),
        max_clients=MAX_CLIENTS,
        max_faults=MAX_FAULTS,
        max_index=MAX_INDEX,
        max_arrival=MAX_ARRIVAL,
        windows=tuple(windows),
    )


def schedules(
    actions: Sequence[Action] = ACTIONS,
    crash_points: Sequence[CrashPoint] = (),
    windows: Sequence[Window] = (),
) -> st.SearchStrategy[FaultSchedule]:
    """Up to MAX_FAULTS link faults, partitions and crashes (only at ``crash_points``)."""
    return space(actions, crash_points, windows).schedules()


def _schedule(events: list[Event]) -> FaultSchedule:
    return to_schedule(events, MAX_CLIENTS)


CLIENTS = st.integers(1, MAX_CLIENTS)


# -- running one schedule ---------------------------------------------------------


@pytest.fixture(scope="module")
def bank() -> Iterator[BankTemplate]:
    with BankTemplate.temporary(MAX_CLIENTS) as template:  # in /dev/shm where there is one
        yield template


def run_schedule(
    bank: BankTemplate,
    semantics: Semantics,
    schedule: FaultSchedule,
    clients: int,
    *,
    service_time: float = 0.0,
) -> ScheduleRun:
    """Run the workload under ``schedule`` on a fresh copy of the ledger; audit it."""
    workload = Workload(
        semantics, RetryPolicy.from_name("fixed", timeout=TIMEOUT), MAX_ATTEMPTS, OPS
    )
    return run_in_sim(bank, workload, Model.DATAGRAM, schedule, clients, service_time=service_time)


def assert_exactly_once(run: ScheduleRun) -> None:
    a = run.audit
    assert (a.duplicated, a.lost, a.money_drift, a.unknown) == (0, 0, 0, 0), a
    assert a.ok == a.executions == a.ops
    assert run.integrity == "ok"


# -- shrunk counterexamples ---------------------------------------------------------


def search(
    check: Callable[[int, FaultSchedule], str | None],
    strategy: st.SearchStrategy[FaultSchedule],
    max_examples: int = 300,
) -> Found:
    """Run ``check`` under Hypothesis (the tool's search loop), expect a shrunk failure."""
    found = find(check, strategy, CLIENTS, max_examples=max_examples)
    assert found.schedule is not None, f"no counterexample in {found.runs} examples"
    return found


def assert_one_minimal(
    found: Found, holds: Callable[[int, FaultSchedule], bool]
) -> tuple[int, FaultSchedule]:
    """The shrunk schedule breaks the property, and dropping any one fault repairs it."""
    clients, shrunk = found.clients, found.schedule
    assert clients is not None and shrunk is not None
    assert not holds(clients, shrunk)
    assert clients == 1  # one client is enough for every violation searched here
    for smaller in without_each_fault(shrunk):
        assert holds(clients, smaller), f"{shrunk} is not minimal: {smaller} also fails"
    assert repr(shrunk) in found.report  # the report prints the readable form
    return clients, shrunk


def duplicated(bank: BankTemplate, semantics: Semantics) -> Callable[[int, FaultSchedule], int]:
    def count(clients: int, schedule: FaultSchedule) -> int:
        return run_schedule(bank, semantics, schedule, clients).audit.duplicated

    return count


def search_duplicates(
    bank: BankTemplate, semantics: Semantics, strategy: st.SearchStrategy[FaultSchedule]
) -> tuple[Found, FaultSchedule]:
    """Search for a duplicated deposit; check the shrunk schedule is 1-minimal."""
    count = duplicated(bank, semantics)

    def no_duplicate(clients: int, schedule: FaultSchedule) -> str | None:
        return f"duplicated deposit under {schedule}" if count(clients, schedule) else None

    found = search(no_duplicate, strategy)
    _, shrunk = assert_one_minimal(found, lambda c, s: count(c, s) == 0)
    return found, shrunk


def test_at_least_once_under_loss_shrinks_to_one_lost_reply(bank: BankTemplate) -> None:
    # The network only loses messages, never duplicates them: the duplicate
    # comes from the client's retry after a lost reply (ONC RPC over UDP).
    found, shrunk = search_duplicates(bank, Semantics.AT_LEAST_ONCE, schedules(DROPS))
    [(client, direction, index, action)] = link_faults(shrunk)
    assert (client, direction, index, action, shrunk.faults) == (0, "reply", 0, DROP, 1)
    assert str(shrunk) == "client0 reply: #0 drop"
    assert "schedule=FaultSchedule.parse('client0 reply: #0 drop')" in found.report


def test_at_least_once_any_single_fault_that_makes_a_second_copy(bank: BankTemplate) -> None:
    # With duplication and delays too, one fault is still enough; which one
    # the shrinker settles on is a local minimum, so assert the class.
    _, shrunk = search_duplicates(bank, Semantics.AT_LEAST_ONCE, schedules())
    [(_, direction, _, action)] = link_faults(shrunk)
    assert shrunk.faults == 1
    late = action.kind is ActionKind.DELAY and action.seconds > TIMEOUT
    assert (direction, action) in {("reply", DROP), ("request", DUPLICATE)} or late


def test_at_most_once_search_finds_a_crash_that_empties_the_reply_cache(bank: BankTemplate) -> None:
    # Crashes on arrival only: a duplicate needs a second copy of a request
    # (a lost reply and a retry, a network duplicate, a delay past the timeout)
    # and a crash that empties the cache after the first copy, before the second.
    found, shrunk = search_duplicates(
        bank, Semantics.AT_MOST_ONCE, schedules(crash_points=(CrashPoint.BEFORE_APPLY,))
    )
    assert shrunk.faults == 2
    assert len(link_faults(shrunk)) == 1 and len(shrunk.crashes) == 1
    assert min(shrunk.crashes) >= 1  # not before the first copy: that crash is harmless
    assert "crash before request #" in found.report


def test_at_most_once_crash_after_apply_is_one_fault(bank: BankTemplate) -> None:
    # A crash between commit and reply loses the reply and the cache at once:
    # the retry is executed again. No single fault of another kind suffices
    # (test_single_faults_that_duplicate), so this is the global minimum.
    _, shrunk = search_duplicates(
        bank, Semantics.AT_MOST_ONCE, schedules(crash_points=tuple(CrashPoint))
    )
    assert shrunk.faults == 1 and len(shrunk.crashes_after_apply) == 1


def test_maybe_duplicates_only_when_the_network_duplicates(bank: BankTemplate) -> None:
    # "maybe" sends once, but its server does not deduplicate: one duplicated
    # datagram is applied twice. The shrunk schedule says exactly that.
    _, shrunk = search_duplicates(bank, Semantics.MAYBE, schedules(crash_points=tuple(CrashPoint)))
    assert str(shrunk) == "client0 request: #0 dup"


def single_faults(clients: int) -> list[FaultSchedule]:
    """Every schedule with exactly one fault, for ``clients`` clients."""
    return list(space(crash_points=tuple(CrashPoint)).single_faults(clients))


def test_single_faults_that_duplicate(bank: BankTemplate) -> None:
    # Exhaustive over one client and one fault (the "small scope"): which
    # single faults make each semantics apply a deposit twice?
    culprits = {
        semantics: {
            str(schedule)
            for schedule in single_faults(1)
            if run_schedule(bank, semantics, schedule, 1).audit.duplicated
        }
        for semantics in Semantics
    }
    crash_after = {f"crash after request #{k}" for k in range(OPS)}
    late = ("delay 15ms", "delay 50ms")  # past the 10 ms timeout; 2 ms is harmless
    assert culprits[Semantics.AT_LEAST_ONCE] == crash_after | {
        f"client0 {direction}: #{k} {action}"
        for k in range(OPS)
        for direction, actions in (("reply", ("drop", *late)), ("request", ("dup", *late)))
        for action in actions
    }
    assert culprits[Semantics.MAYBE] == {f"client0 request: #{k} dup" for k in range(OPS)}
    assert culprits[Semantics.AT_MOST_ONCE] == crash_after
    assert culprits[Semantics.EXACTLY_ONCE] == set()


# -- guarantees that hold under every schedule searched ------------------------------


@settings(SEARCH, max_examples=examples(150))
@given(
    clients=CLIENTS,
    schedule=schedules(NO_DUP_ACTIONS, crash_points=tuple(CrashPoint)),
)
def test_maybe_never_duplicates_without_network_duplication(
    bank: BankTemplate, clients: int, schedule: FaultSchedule
) -> None:
    run = run_schedule(bank, Semantics.MAYBE, schedule, clients)
    assert run.audit.duplicated == 0
    assert run.audit.attempts == run.audit.ops  # one attempt each, whatever happens


@settings(SEARCH, max_examples=examples(150))
@given(clients=CLIENTS, schedule=schedules(), service_time=st.sampled_from(SERVICE_TIMES))
def test_at_most_once_without_crashes_never_duplicates(
    bank: BankTemplate, clients: int, schedule: FaultSchedule, service_time: float
) -> None:
    run = run_schedule(bank, Semantics.AT_MOST_ONCE, schedule, clients, service_time=service_time)
    assert_exactly_once(run)


@settings(SEARCH, max_examples=examples(300))
@given(
    clients=CLIENTS,
    schedule=schedules(crash_points=tuple(CrashPoint), windows=WINDOWS),
    service_time=st.sampled_from(SERVICE_TIMES),
)
def test_exactly_once_survives_every_schedule(
    bank: BankTemplate, clients: int, schedule: FaultSchedule, service_time: float
) -> None:
    run = run_schedule(bank, Semantics.EXACTLY_ONCE, schedule, clients, service_time=service_time)
    # Coverage, shown by pytest --hypothesis-show-statistics.
    event(f"faults: {schedule.faults}")
    event("crashed" if run.crashes else "no crash")
    event("retried" if run.audit.attempts > run.audit.ops else "no retry")
    assert_exactly_once(run)


# -- the schedule machinery itself ---------------------------------------------------


@settings(SEARCH, max_examples=examples(200))
@given(schedules(crash_points=tuple(CrashPoint), windows=WINDOWS))
def test_schedule_text_round_trips(schedule: FaultSchedule) -> None:
    assert FaultSchedule.parse(str(schedule)) == schedule
    assert eval(repr(schedule)) == schedule  # the report's form is valid Python


def test_schedule_text_examples() -> None:
    schedule = FaultSchedule(
        (ClientSchedule(reply=(DROP,)), ClientSchedule(request=(DELIVER, delay(0.015)))),
        crashes=frozenset({3}),
        crashes_after_apply=frozenset({5}),
    )
    assert str(schedule) == (
        "client0 reply: #0 drop; client1 request: #1 delay 15ms; "
        "crash before request #3; crash after request #5"
    )
    assert str(FaultSchedule()) == "no faults"
    assert FaultSchedule(crashes=frozenset({1})).crash_at(1) is CrashPoint.BEFORE_APPLY
    # Trailing delivers and empty trailing clients carry no information.
    assert FaultSchedule((ClientSchedule((DROP, DELIVER)), ClientSchedule())) == FaultSchedule(
        (ClientSchedule((DROP,)),)
    )
    with pytest.raises(ValueError, match="two crash points"):
        FaultSchedule(crashes=frozenset({1}), crashes_after_apply=frozenset({1}))
    with pytest.raises(ValueError, match="cannot parse"):
        FaultSchedule.parse("client0 sideways: #0 drop")


def _deliveries(link: ScheduledLink, count: int) -> list[tuple[tuple[float, ...], bool]]:
    out = []
    for k in range(count):
        verdict = link.apply(b"m%d" % k, float(k))
        out.append((tuple(d.at for d in verdict.deliveries), verdict.reset))
    return out


def test_scheduled_link_datagram() -> None:
    link = ScheduledLink([DELIVER, DROP, DUPLICATE, delay(2.5)], gap=0.25)
    assert _deliveries(link, 5) == [
        ((0.0,), False),
        ((), False),
        ((2.0, 2.25), False),
        ((5.5,), False),  # sent at 3, overtaken by message #4 sent at 4
        ((4.0,), False),
    ]
    assert link.counters == {"messages": 5, "drop": 1, "dup": 1, "delay": 1}


def test_scheduled_link_stream_keeps_tcp_meaning_under_tcp_reset() -> None:
    actions = [DELIVER, delay(2.5), DELIVER, DUPLICATE, DROP]
    link = ScheduledLink(actions, stream=True, tcp=TcpRecovery.RESET)
    assert _deliveries(link, 6) == [
        ((0.0,), False),
        ((3.5,), False),
        ((3.5,), False),  # held behind the delayed message: no overtaking
        ((3.5,), False),  # duplicate absorbed
        ((), True),  # a loss breaks the connection
        ((5.0,), False),
    ]
    assert link.counters["fifo_hold"] == 2 and link.counters["absorbed_dup"] == 1


def test_scheduled_link_stream_retransmits_a_drop() -> None:
    link = ScheduledLink([DELIVER, DROP, DELIVER, DROP, DROP], stream=True)
    assert _deliveries(link, 5) == [
        ((0.0,), False),
        ((1.204,), False),  # lost, sent again by the tail loss probe 204 ms later
        ((2.0,), False),
        ((3.204,), False),  # one drop per message: each probe arrives
        ((4.204,), False),
    ]
    assert link.counters["retransmitted"] == 3 and "reset" not in link.counters


# -- crash injection in the simulator -----------------------------------------------


def crash_run(bank: BankTemplate, semantics: Semantics, text: str, **kw: Any) -> ScheduleRun:
    return run_schedule(bank, semantics, FaultSchedule.parse(text), 1, **kw)


def test_crash_before_apply_is_harmless_alone(bank: BankTemplate) -> None:
    for semantics in Semantics:
        run = crash_run(bank, semantics, "crash before request #0; crash before request #2")
        assert len(run.crashes) == 2 and run.arrivals == OPS
        assert_exactly_once(run)


def test_crash_after_apply_loses_the_reply(bank: BankTemplate) -> None:
    expected = {
        Semantics.MAYBE: (0, 1),  # applied, client saw nothing: unknown (phantom)
        Semantics.AT_LEAST_ONCE: (1, 0),
        Semantics.AT_MOST_ONCE: (1, 0),  # the reply cache died with the server
        Semantics.EXACTLY_ONCE: (0, 0),  # the idempotency key is in the ledger
    }
    for semantics, (duplicated, phantom) in expected.items():
        a = crash_run(bank, semantics, "crash after request #0").audit
        assert (a.duplicated, a.phantom, a.lost) == (duplicated, phantom, 0), semantics
        assert a.unknown == phantom


def test_crash_drops_requests_admitted_but_not_finished(bank: BankTemplate) -> None:
    # With a 15 ms service time and a 10 ms timeout, the retry of deposit #0
    # arrives (arrival #1) while the first copy is executing; the crash before
    # it drops the first copy: deposit #0 is applied once, by the retry.
    run = crash_run(bank, Semantics.AT_MOST_ONCE, "crash before request #1", service_time=0.015)
    assert len(run.crashes) == 1
    assert_exactly_once(run)
    assert run.audit.attempts > OPS
