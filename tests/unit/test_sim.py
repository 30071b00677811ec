"""The virtual-time simulator: timing, determinism and the semantics under faults."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.bank import BankService
from services.ledger import Ledger
from services.text import TextService
from transports.call import CallResult, Outcome, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpec, TcpRecovery
from transports.retry import RetryPolicy
from transports.semantics import Semantics
from transports.sim import SimRequest, SimResult, simulate

LATENCY = 100e-6
OPENING = 10_000


def fixed(timeout: float = 0.01, attempts: int = 5) -> RetrySettings:
    return RetrySettings(RetryPolicy.from_name("fixed", timeout=timeout), max_attempts=attempts)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(str(tmp_path / "b.sqlite3"), scrypt_n=2**10) as ledger:
        yield ledger


def deposit_plans(ledger: Ledger, clients: int, ops: int) -> list[list[SimRequest]]:
    """Client i deposits 1..ops into demo account i + 1, with distinct request ids."""
    plans = []
    for i in range(clients):
        token, _ = ledger.login(i + 1, "1234", now=0.0)
        plans.append(
            [
                SimRequest(f"c{i}-{k}", "bank.deposit", {"token": token, "amount": k + 1})
                for k in range(ops)
            ]
        )
    return plans


def text_plans(clients: int, ops: int) -> list[list[SimRequest]]:
    return [
        [SimRequest(f"t{i}-{k}", "text.convert", {"text": f"Hello {k}"}) for k in range(ops)]
        for i in range(clients)
    ]


def bank_run(
    ledger: Ledger,
    semantics: Semantics,
    clients: int = 3,
    ops: int = 40,
    *,
    faults: FaultSpec | None = None,
    seed: int = 0,
    stream: bool = False,
) -> tuple[list[list[SimRequest]], SimResult, ServerEndpoint]:
    endpoint = ServerEndpoint(BankService(ledger), semantics)
    plans = deposit_plans(ledger, clients, ops)
    result = simulate(endpoint, plans, lambda _i: fixed(), faults=faults, seed=seed, stream=stream)
    return plans, result, endpoint


def fingerprint(result: SimResult) -> list[tuple[str, Outcome, int, float, float]]:
    return [
        (r.request.id, r.outcome, r.attempts, r.started, r.latency)
        for client in result.calls
        for r in client
    ]


def assert_no_duplicate_no_lost(
    plans: list[list[SimRequest]], result: SimResult, ledger: Ledger
) -> None:
    applied = ledger.applications()
    assert all(count <= 1 for count in applied.values())
    ok = [r for client in result.calls for r in client if r.outcome is Outcome.OK]
    lost = sum(1 for r in ok if r.request.id not in applied)
    assert lost == 0
    # Every applied deposit is in the balance, once.
    for i, plan in enumerate(plans):
        amounts = sum(int(req.args["amount"]) for req in plan if req.request_id in applied)
        assert ledger.balance(i + 1) == OPENING + amounts


def all_results(result: SimResult) -> list[CallResult]:
    return [r for client in result.calls for r in client]


# -- no faults ----------------------------------------------------------------


def test_no_faults_every_call_ok_first_attempt(ledger: Ledger) -> None:
    ops = 25
    _, result, _ = bank_run(ledger, Semantics.AT_LEAST_ONCE, clients=1, ops=ops)
    assert [r.outcome for r in all_results(result)] == [Outcome.OK] * ops
    assert all(r.attempts == 1 for r in all_results(result))
    assert ledger.balance(1) == OPENING + ops * (ops + 1) // 2
    assert result.virtual_time == pytest.approx(ops * 2 * LATENCY)
    assert result.messages == 2 * ops
    assert result.connections == [0]
    assert all(r.latency == pytest.approx(2 * LATENCY) for r in all_results(result))


def test_clients_run_concurrently_in_virtual_time() -> None:
    endpoint = ServerEndpoint(TextService())
    result = simulate(endpoint, text_plans(4, 30), lambda _i: fixed())
    assert [len(c) for c in result.calls] == [30] * 4
    assert result.virtual_time == pytest.approx(30 * 2 * LATENCY)
    assert result.calls[2][0].result == {"lower": "hello 0", "upper": "HELLO 0"}


def test_stream_without_faults_costs_one_handshake() -> None:
    endpoint = ServerEndpoint(TextService())
    result = simulate(endpoint, text_plans(2, 10), lambda _i: fixed(), stream=True)
    assert result.connections == [1, 1]
    assert all(r.attempts == 1 for r in all_results(result))
    assert result.virtual_time == pytest.approx((10 + 1) * 2 * LATENCY)


def test_empty_plans() -> None:
    result = simulate(ServerEndpoint(TextService()), [[], []], lambda _i: fixed())
    assert result.calls == [[], []]
    assert result.events == 0


# -- determinism ----------------------------------------------------------------

NOISY = FaultSpec(loss=0.2, dup=0.2, reorder=0.2, jitter=0.001, corrupt=0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_same_seed_same_result(stream: bool) -> None:
    def run(seed: int) -> SimResult:
        endpoint = ServerEndpoint(TextService())
        return simulate(
            endpoint, text_plans(3, 60), lambda _i: fixed(), faults=NOISY, seed=seed, stream=stream
        )

    first, second, other = run(7), run(7), run(8)
    assert fingerprint(first) == fingerprint(second)
    assert (first.virtual_time, first.messages, first.events, first.connections) == (
        second.virtual_time,
        second.messages,
        second.events,
        second.connections,
    )
    assert fingerprint(first) != fingerprint(other)
    assert [r.attempts for r in all_results(first)] != [r.attempts for r in all_results(other)]


# -- semantics under faults -------------------------------------------------------


def test_at_least_once_duplicates_under_loss(ledger: Ledger) -> None:
    _, result, _ = bank_run(ledger, Semantics.AT_LEAST_ONCE, faults=FaultSpec(loss=0.3), seed=1)
    assert max(ledger.applications().values()) > 1
    assert any(r.attempts > 1 for r in all_results(result))


@pytest.mark.parametrize("semantics", [Semantics.AT_MOST_ONCE, Semantics.EXACTLY_ONCE])
@pytest.mark.parametrize("stream", [False, True])
def test_at_most_and_exactly_once_never_duplicate(
    ledger: Ledger, semantics: Semantics, stream: bool
) -> None:
    faults = FaultSpec(loss=0.2, dup=0.2, reorder=0.2)
    plans, result, _ = bank_run(ledger, semantics, faults=faults, seed=3, stream=stream)
    assert any(r.attempts > 1 for r in all_results(result))
    assert_no_duplicate_no_lost(plans, result, ledger)


def test_stream_loss_resets_and_reconnects_under_tcp_reset(ledger: Ledger) -> None:
    faults = FaultSpec(loss=0.1, dup=0.3, reorder=0.3, tcp=TcpRecovery.RESET)
    plans, result, _ = bank_run(ledger, Semantics.EXACTLY_ONCE, faults=faults, seed=5, stream=True)
    assert [len(c) for c in result.calls] == [len(p) for p in plans]
    assert all(n > 1 for n in result.connections)
    assert sum(r.outcome is Outcome.OK for r in all_results(result)) > 0.9 * 3 * 40
    assert_no_duplicate_no_lost(plans, result, ledger)


def test_stream_absorbs_dup_and_reorder() -> None:
    faults = FaultSpec(dup=0.5, reorder=0.5)
    endpoint = ServerEndpoint(TextService())
    result = simulate(
        endpoint, text_plans(2, 50), lambda _i: fixed(), faults=faults, seed=2, stream=True
    )
    assert all(r.outcome is Outcome.OK and r.attempts == 1 for r in all_results(result))
    assert result.connections == [1, 1]
    assert endpoint.counters["requests"] == 100


def test_stream_reply_reset_after_apply_duplicates_at_least_once(ledger: Ledger) -> None:
    # A reset on the reply: the server applied the deposit, the client retries.
    _, result, _ = bank_run(
        ledger, Semantics.AT_LEAST_ONCE, faults=FaultSpec(reset=0.2), seed=4, stream=True
    )
    assert max(ledger.applications().values()) > 1
    assert sum(result.connections) > 3


def test_corruption_never_applies_a_wrong_operation(ledger: Ledger) -> None:
    plans, result, endpoint = bank_run(
        ledger, Semantics.AT_LEAST_ONCE, faults=FaultSpec(corrupt=0.3), seed=6
    )
    assert sum(v for k, v in endpoint.counters.items() if k.startswith("rejected_")) > 0
    planned = {
        (req.request_id, i + 1, int(req.args["amount"]))
        for i, plan in enumerate(plans)
        for req in plan
    }
    with sqlite3.connect(ledger.path) as db:
        rows = db.execute("SELECT request_id, account_id, kind, amount FROM ledger").fetchall()
    assert rows
    for request_id, account, kind, amount in rows:
        assert kind == "deposit"
        assert (request_id, account, amount) in planned
    ok = [r for r in all_results(result) if r.outcome is Outcome.OK]
    assert all(r.request.id in ledger.applications() for r in ok)


def test_slow_server_drops_retries_in_progress(ledger: Ledger) -> None:
    endpoint = ServerEndpoint(BankService(ledger), Semantics.AT_MOST_ONCE)
    cache = endpoint.reply_cache
    plans = deposit_plans(ledger, 2, 10)
    result = simulate(endpoint, plans, lambda _i: fixed(timeout=0.01), service_time=0.025)
    assert endpoint.counters["dropped_in_progress"] > 0
    assert endpoint.reply_cache is cache  # the simulator's stand-in is removed again
    assert all(r.outcome is Outcome.OK for r in all_results(result))
    assert all(r.attempts == 3 for r in all_results(result))
    assert_no_duplicate_no_lost(plans, result, ledger)


def test_server_receive_hook_sees_every_request() -> None:
    seen: list[float] = []
    endpoint = ServerEndpoint(TextService())
    simulate(
        endpoint,
        text_plans(2, 20),
        lambda _i: fixed(),
        faults=FaultSpec(loss=0.2, dup=0.2),
        on_server_receive=lambda now, _data: seen.append(now),
    )
    assert len(seen) == endpoint.counters["requests"] > 40


def test_max_events_bound_raises() -> None:
    with pytest.raises(RuntimeError, match="max_events"):
        simulate(
            ServerEndpoint(TextService()), text_plans(1, 100), lambda _i: fixed(), max_events=50
        )


def test_gives_up_when_nothing_gets_through_under_tcp_reset() -> None:
    result = simulate(
        ServerEndpoint(TextService()),
        text_plans(1, 3),
        lambda _i: fixed(attempts=4),
        faults=FaultSpec(loss=1.0, tcp=TcpRecovery.RESET),
        stream=True,
    )
    assert [(r.outcome, r.attempts) for r in all_results(result)] == [(Outcome.UNKNOWN, 4)] * 3
    assert result.connections == [12]


def test_gives_up_when_no_connection_opens_under_tcp_retransmit() -> None:
    # Every SYN is lost: the one connection never opens (connect() would fail
    # after TCP's SYN retries, 131 s), every attempt waits behind it, and no
    # call can tell whether its request left: unknown, each once.
    endpoint = ServerEndpoint(TextService())
    result = simulate(
        endpoint,
        text_plans(1, 3),
        lambda _i: fixed(attempts=4),
        faults=FaultSpec(loss=1.0),
        stream=True,
    )
    assert [(r.outcome, r.attempts) for r in all_results(result)] == [(Outcome.UNKNOWN, 4)] * 3
    assert result.connections == [1]
    assert endpoint.counters["requests"] == 0
