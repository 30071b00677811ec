"""Hypothesis searches explicit fault schedules on the simulator and shrinks failures.

Each example is a small bank workload (1-2 clients, a few deposits) run by
``simulate`` over ``ScheduledLink``s plus server crashes from a
``FaultSchedule``, then audited against a fresh SQLite ledger. Tests of the
form "the search finds X" run an inner property that fails by design under
``pytest.raises`` and assert on the *shrunk* schedule: its size, its shape,
that removing any one of its faults makes the failure go away (1-minimal),
and that Hypothesis's report prints it readably.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from experiments.audit import Audit, audit
from experiments.workload import Operation
from services.bank import BankService
from services.ledger import Ledger
from transports.call import RetrySettings
from transports.endpoint import ServerEndpoint
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
    delay,
)
from transports.semantics import Semantics
from transports.sim import CrashPoint, SimRequest, simulate

SCRYPT_N = 2**10
PIN = "0000"
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

# Search settings: deterministic whatever the profile, no example database.
# No explain phase: it re-runs the failure ~10x to annotate the report.
SEARCH = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- strategies -----------------------------------------------------------------
#
# A schedule is drawn as a short list of fault *events*, each naming its own
# target, rather than as dense per-link action lists: deleting an event
# removes exactly one fault without renumbering the others. Each event is two
# sampled_from draws (target, action), so with the list's "one more?" flag and
# the link-or-crash branch it spans four choices: Hypothesis's shrinker deletes
# runs of at most five choices, and a longer event could never be deleted from
# the middle of the list, leaving shrunk schedules that are not minimal.

LinkFault = tuple[tuple[int, str, int], Action]  # (client, direction, message index), action
Crash = tuple[int, CrashPoint]  # arrival index, crash point

# Simplest first (sampled_from shrinks towards the front): client 0, early
# messages, replies before requests.
TARGETS = [
    (client, direction, index)
    for client in range(MAX_CLIENTS)
    for index in range(MAX_INDEX + 1)
    for direction in ("reply", "request")
]
DELAY_ACTIONS = [delay(d) for d in DELAYS]
DROPS = [DROP]
NO_DUP_ACTIONS = [DROP, *DELAY_ACTIONS]
ACTIONS = [DROP, DUPLICATE, *DELAY_ACTIONS]


def schedules(
    actions: Sequence[Action] = ACTIONS,
    crash_points: Sequence[CrashPoint] = (),
) -> st.SearchStrategy[FaultSchedule]:
    """Up to MAX_FAULTS link faults and crashes (only at ``crash_points``)."""
    link: st.SearchStrategy[LinkFault] = st.tuples(
        st.sampled_from(TARGETS), st.sampled_from(actions)
    )
    event: st.SearchStrategy[LinkFault | Crash] = link
    if crash_points:
        crash = st.tuples(st.integers(0, MAX_ARRIVAL), st.sampled_from(crash_points))
        event = st.one_of(link, crash)
    # Unique targets: two events on one message would make a fault that only
    # disappears when both are deleted at once.
    return st.lists(event, max_size=MAX_FAULTS, unique_by=_target).map(_schedule)


def _target(event: LinkFault | Crash) -> object:
    return event[0]  # (client, direction, index) or an arrival index


def _schedule(events: list[LinkFault | Crash]) -> FaultSchedule:
    table: dict[tuple[int, str], dict[int, Action]] = {}
    crashes: dict[int, CrashPoint] = {}
    for item in events:
        if isinstance(item[1], CrashPoint):
            crashes[item[0]] = item[1]
        else:
            (client, direction, index), action = item
            table.setdefault((client, direction), {})[index] = action
    clients = tuple(
        ClientSchedule(_dense(table.get((i, "request"), {})), _dense(table.get((i, "reply"), {})))
        for i in range(MAX_CLIENTS)
    )
    return FaultSchedule(
        clients,
        frozenset(k for k, p in crashes.items() if p is CrashPoint.BEFORE_APPLY),
        frozenset(k for k, p in crashes.items() if p is CrashPoint.AFTER_APPLY),
    )


def _dense(actions: dict[int, Action]) -> tuple[Action, ...]:
    return tuple(actions.get(k, DELIVER) for k in range(max(actions, default=-1) + 1))


CLIENTS = st.integers(1, MAX_CLIENTS)


# -- running one schedule ---------------------------------------------------------


@dataclass(frozen=True)
class Bank:
    """A template ledger (accounts and sessions made once) copied per example."""

    template: Path
    workdir: Path
    tokens: tuple[str, ...]
    counter: Iterator[int]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Bank:
    # Copying a closed SQLite file costs ~1-5 ms; building one (schema,
    # scrypt-hashed PINs, logins) ~25 ms, too much for a shrinking search.
    workdir = tmp_path_factory.mktemp("schedules")
    template = workdir / "template.sqlite3"
    with Ledger(str(template), demo_accounts=False, scrypt_n=SCRYPT_N, session_ttl=1e9) as ledger:
        tokens = []
        for i in range(MAX_CLIENTS):
            ledger.create_account(i + 1, f"client {i}", PIN, 0)
            tokens.append(ledger.login(i + 1, PIN, now=0.0)[0])
    return Bank(template, workdir, tuple(tokens), itertools.count())


@dataclass(frozen=True)
class Run:
    audit: Audit
    integrity: str
    crashes: int
    arrivals: int


def run_schedule(
    bank: Bank,
    semantics: Semantics,
    schedule: FaultSchedule,
    clients: int,
    *,
    service_time: float = 0.0,
) -> Run:
    """Run the workload under ``schedule`` on a fresh copy of the ledger; audit it."""
    path = bank.workdir / f"run{next(bank.counter)}.sqlite3"
    shutil.copyfile(bank.template, path)
    try:
        with Ledger(str(path), scrypt_n=SCRYPT_N, session_ttl=1e9) as ledger:
            endpoint = ServerEndpoint(BankService(ledger), semantics)
            operations = [
                [Operation(f"c{i}-{k}", "deposit", k + 1, i + 1) for k in range(OPS)]
                for i in range(clients)
            ]
            plans = [
                [SimRequest(op.request_id, *op.call_args(bank.tokens[i])) for op in plan]
                for i, plan in enumerate(operations)
            ]
            attempts = 1 if semantics is Semantics.MAYBE else MAX_ATTEMPTS
            policy = RetryPolicy.from_name("fixed", timeout=TIMEOUT)
            opening = ledger.total_balance()
            result = simulate(
                endpoint,
                plans,
                lambda _i: RetrySettings(policy, attempts),
                links=schedule.links(clients),
                crashes=schedule.crash_at,
                service_time=service_time,
                max_events=100_000,
            )
            outcome = audit(
                [op for plan in operations for op in plan],
                [r for calls in result.calls for r in calls],
                ledger.applications(),
                ledger.total_balance(),
                opening,
            )
            return Run(outcome, ledger.integrity_check(), len(result.crashes), result.arrivals)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def assert_exactly_once(run: Run) -> None:
    a = run.audit
    assert (a.duplicated, a.lost, a.money_drift, a.unknown) == (0, 0, 0, 0), a
    assert a.ok == a.executions == a.ops
    assert run.integrity == "ok"


# -- shrunk counterexamples ---------------------------------------------------------


@dataclass
class Search:
    """What an inner, failing-by-design property saw: the last failure is the shrunk one."""

    failures: list[tuple[int, FaultSchedule]]
    report: str


def search(
    prop: Callable[[int, FaultSchedule], None],
    strategy: st.SearchStrategy[FaultSchedule],
    max_examples: int = 300,
) -> Search:
    """Run ``prop`` under Hypothesis, expect it to fail, return the shrunk example."""
    failures: list[tuple[int, FaultSchedule]] = []

    @settings(SEARCH, max_examples=max_examples)
    @given(clients=CLIENTS, schedule=strategy)
    def inner(clients: int, schedule: FaultSchedule) -> None:
        try:
            prop(clients, schedule)
        except AssertionError:
            failures.append((clients, schedule))
            raise

    with pytest.raises(AssertionError) as excinfo:
        inner()
    # Hypothesis replays the minimal example last and attaches its report as notes.
    return Search(failures, "\n".join(getattr(excinfo.value, "__notes__", [])))


def without_each_fault(schedule: FaultSchedule) -> Iterator[FaultSchedule]:
    """Every schedule with exactly one of ``schedule``'s faults removed."""
    for k in schedule.crashes:
        yield replace(schedule, crashes=schedule.crashes - {k})
    for k in schedule.crashes_after_apply:
        yield replace(schedule, crashes_after_apply=schedule.crashes_after_apply - {k})
    for i, plan in enumerate(schedule.clients):
        for direction in ("request", "reply"):
            actions: tuple[Action, ...] = getattr(plan, direction)
            for k, action in enumerate(actions):
                if action != DELIVER:
                    cleared = (*actions[:k], DELIVER, *actions[k + 1 :])
                    clients = list(schedule.clients)
                    clients[i] = replace(plan, **{direction: cleared})
                    yield replace(schedule, clients=tuple(clients))


def link_faults(schedule: FaultSchedule) -> list[tuple[int, str, int, Action]]:
    """(client, direction, index, action) of every non-deliver action."""
    return [
        (i, direction, k, action)
        for i, plan in enumerate(schedule.clients)
        for direction, actions in (("request", plan.request), ("reply", plan.reply))
        for k, action in enumerate(actions)
        if action != DELIVER
    ]


def assert_one_minimal(
    found: Search, holds: Callable[[int, FaultSchedule], bool]
) -> tuple[int, FaultSchedule]:
    """The shrunk schedule breaks the property, and dropping any one fault repairs it."""
    clients, shrunk = found.failures[-1]
    assert not holds(clients, shrunk)
    assert clients == 1  # one client is enough for every violation searched here
    for smaller in without_each_fault(shrunk):
        assert holds(clients, smaller), f"{shrunk} is not minimal: {smaller} also fails"
    assert repr(shrunk) in found.report  # the report prints the readable form
    return clients, shrunk


def duplicated(bank: Bank, semantics: Semantics) -> Callable[[int, FaultSchedule], int]:
    def count(clients: int, schedule: FaultSchedule) -> int:
        return run_schedule(bank, semantics, schedule, clients).audit.duplicated

    return count


def search_duplicates(
    bank: Bank, semantics: Semantics, strategy: st.SearchStrategy[FaultSchedule]
) -> tuple[Search, FaultSchedule]:
    """Search for a duplicated deposit; check the shrunk schedule is 1-minimal."""
    count = duplicated(bank, semantics)

    def no_duplicate(clients: int, schedule: FaultSchedule) -> None:
        assert count(clients, schedule) == 0, f"duplicated deposit under {schedule}"

    found = search(no_duplicate, strategy)
    _, shrunk = assert_one_minimal(found, lambda c, s: count(c, s) == 0)
    return found, shrunk


def test_at_least_once_under_loss_shrinks_to_one_lost_reply(bank: Bank) -> None:
    # The network only loses messages, never duplicates them: the duplicate
    # comes from the client's retry after a lost reply (ONC RPC over UDP).
    found, shrunk = search_duplicates(bank, Semantics.AT_LEAST_ONCE, schedules(DROPS))
    [(client, direction, index, action)] = link_faults(shrunk)
    assert (client, direction, index, action, shrunk.faults) == (0, "reply", 0, DROP, 1)
    assert str(shrunk) == "client0 reply: #0 drop"
    assert "schedule=FaultSchedule.parse('client0 reply: #0 drop')" in found.report


def test_at_least_once_any_single_fault_that_makes_a_second_copy(bank: Bank) -> None:
    # With duplication and delays too, one fault is still enough; which one
    # the shrinker settles on is a local minimum, so assert the class.
    _, shrunk = search_duplicates(bank, Semantics.AT_LEAST_ONCE, schedules())
    [(_, direction, _, action)] = link_faults(shrunk)
    assert shrunk.faults == 1
    late = action.kind is ActionKind.DELAY and action.seconds > TIMEOUT
    assert (direction, action) in {("reply", DROP), ("request", DUPLICATE)} or late


def test_at_most_once_search_finds_a_crash_that_empties_the_reply_cache(bank: Bank) -> None:
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


def test_at_most_once_crash_after_apply_is_one_fault(bank: Bank) -> None:
    # A crash between commit and reply loses the reply and the cache at once:
    # the retry is executed again. No single fault of another kind suffices
    # (test_single_faults_that_duplicate), so this is the global minimum.
    _, shrunk = search_duplicates(
        bank, Semantics.AT_MOST_ONCE, schedules(crash_points=tuple(CrashPoint))
    )
    assert shrunk.faults == 1 and len(shrunk.crashes_after_apply) == 1


def test_maybe_duplicates_only_when_the_network_duplicates(bank: Bank) -> None:
    # "maybe" sends once, but its server does not deduplicate: one duplicated
    # datagram is applied twice. The shrunk schedule says exactly that.
    _, shrunk = search_duplicates(bank, Semantics.MAYBE, schedules(crash_points=tuple(CrashPoint)))
    assert str(shrunk) == "client0 request: #0 dup"


def single_faults(clients: int) -> Iterator[FaultSchedule]:
    """Every schedule with exactly one fault, for ``clients`` clients."""
    for (client, direction, index), action in itertools.product(TARGETS, ACTIONS):
        if client < clients:
            yield _schedule([((client, direction, index), action)])
    for arrival, point in itertools.product(range(MAX_ARRIVAL + 1), CrashPoint):
        yield _schedule([(arrival, point)])


def test_single_faults_that_duplicate(bank: Bank) -> None:
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


@settings(SEARCH, max_examples=150)
@given(
    clients=CLIENTS,
    schedule=schedules(NO_DUP_ACTIONS, crash_points=tuple(CrashPoint)),
)
def test_maybe_never_duplicates_without_network_duplication(
    bank: Bank, clients: int, schedule: FaultSchedule
) -> None:
    run = run_schedule(bank, Semantics.MAYBE, schedule, clients)
    assert run.audit.duplicated == 0
    assert run.audit.attempts == run.audit.ops  # one attempt each, whatever happens


@settings(SEARCH, max_examples=150)
@given(clients=CLIENTS, schedule=schedules(), service_time=st.sampled_from(SERVICE_TIMES))
def test_at_most_once_without_crashes_never_duplicates(
    bank: Bank, clients: int, schedule: FaultSchedule, service_time: float
) -> None:
    run = run_schedule(bank, Semantics.AT_MOST_ONCE, schedule, clients, service_time=service_time)
    assert_exactly_once(run)


@settings(SEARCH, max_examples=300)
@given(
    clients=CLIENTS,
    schedule=schedules(crash_points=tuple(CrashPoint)),
    service_time=st.sampled_from(SERVICE_TIMES),
)
def test_exactly_once_survives_every_schedule(
    bank: Bank, clients: int, schedule: FaultSchedule, service_time: float
) -> None:
    run = run_schedule(bank, Semantics.EXACTLY_ONCE, schedule, clients, service_time=service_time)
    # Coverage, shown by pytest --hypothesis-show-statistics.
    event(f"faults: {schedule.faults}")
    event("crashed" if run.crashes else "no crash")
    event("retried" if run.audit.attempts > run.audit.ops else "no retry")
    assert_exactly_once(run)


# -- the schedule machinery itself ---------------------------------------------------


@settings(SEARCH, max_examples=200)
@given(schedules(crash_points=tuple(CrashPoint)))
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


def crash_run(bank: Bank, semantics: Semantics, text: str, **kw: Any) -> Run:
    return run_schedule(bank, semantics, FaultSchedule.parse(text), 1, **kw)


def test_crash_before_apply_is_harmless_alone(bank: Bank) -> None:
    for semantics in Semantics:
        run = crash_run(bank, semantics, "crash before request #0; crash before request #2")
        assert run.crashes == 2 and run.arrivals == OPS
        assert_exactly_once(run)


def test_crash_after_apply_loses_the_reply(bank: Bank) -> None:
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


def test_crash_drops_requests_admitted_but_not_finished(bank: Bank) -> None:
    # With a 15 ms service time and a 10 ms timeout, the retry of deposit #0
    # arrives (arrival #1) while the first copy is executing; the crash before
    # it drops the first copy: deposit #0 is applied once, by the retry.
    run = crash_run(bank, Semantics.AT_MOST_ONCE, "crash before request #1", service_time=0.015)
    assert run.crashes == 1
    assert_exactly_once(run)
    assert run.audit.attempts > OPS
