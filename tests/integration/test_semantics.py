"""Each call semantics' guarantee, audited on every transport (issue 3).

Cells run the experiment's own runner: a fresh SQLite ledger, a real server
(or the simulator) and seeded clients whose faults lose, duplicate and
reorder messages; the audit then compares the ledger with what each client
was told.
"""

from __future__ import annotations

import pytest

from experiments.analytic import agrees, predict
from experiments.runner import Cell, CellRun, run_cell
from transports.faults import FaultSpec
from transports.retry import RetryPolicy
from transports.semantics import Semantics

#: Real servers waiting out retries, restarts or kernel timers: seconds per test.
pytestmark = pytest.mark.slow

HOSTILE_NETWORK = FaultSpec.parse("loss=0.2,dup=0.1,reorder=0.1,gap=2ms")


def run(
    transport: str, semantics: Semantics, faults: FaultSpec, ops: int = 120, timeout: float = 0.05
) -> CellRun:
    return run_cell(
        Cell(
            transport=transport,
            semantics=semantics,
            faults=faults,
            policy=RetryPolicy.from_name("fixed", timeout=timeout),
            max_attempts=5,
            ops=ops,
            clients=4,
            seed=7,
        )
    )


@pytest.fixture(params=["tcp", "udp", "sim-tcp", "sim-udp"])
def any_transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


#: A client timeout above TCP's own recovery (a lost segment is sent again
#: after 200 ms, then 400, 800 ...): with 50 ms and 5 attempts a TCP client
#: gives up while TCP is still retransmitting, which experiments.retries
#: measures and the liveness check below is not about.
TCP_TIMEOUT = 1.0


@pytest.mark.parametrize("semantics", [Semantics.AT_MOST_ONCE, Semantics.EXACTLY_ONCE])
def test_deduplicating_semantics_never_duplicate(any_transport: str, semantics: Semantics) -> None:
    timeout = TCP_TIMEOUT if any_transport in ("tcp", "sim-tcp") else 0.05
    audit = run(any_transport, semantics, HOSTILE_NETWORK, timeout=timeout).audit
    assert audit.lost == 0
    assert audit.duplicated == 0
    assert audit.phantom_failed == 0
    # Each operation applied at most once: executions are the ok ones plus
    # the ones whose outcome the client could not know.
    assert audit.executions == audit.ok + audit.phantom
    assert audit.ok + audit.failed + audit.unknown == audit.ops
    assert audit.ok > 0.9 * audit.ops


def test_at_least_once_duplicates_when_replies_are_lost(any_transport: str) -> None:
    audit = run(any_transport, Semantics.AT_LEAST_ONCE, HOSTILE_NETWORK).audit
    assert audit.lost == 0
    assert audit.duplicated > 0
    assert audit.executions > audit.ok


def test_maybe_never_retries(any_transport: str) -> None:
    audit = run(any_transport, Semantics.MAYBE, HOSTILE_NETWORK).audit
    assert audit.attempts == audit.ops
    # UDP dup may deliver twice; TCP absorbs duplicates
    assert audit.duplicated == 0 or any_transport not in ("tcp", "sim-tcp")
    assert audit.lost == 0


def test_no_faults_everything_ok_once(any_transport: str) -> None:
    # A timeout far above any round trip: no retry can be spurious, even on a
    # loaded machine, so at-least-once must apply everything exactly once.
    audit = run(any_transport, Semantics.AT_LEAST_ONCE, FaultSpec(), ops=60, timeout=2.0).audit
    assert (audit.ok, audit.executions, audit.duplicated, audit.money_drift) == (60, 60, 0, 0)


@pytest.mark.parametrize(
    ("semantics", "spec"),
    [
        (Semantics.AT_LEAST_ONCE, "loss=0.1"),
        (Semantics.AT_LEAST_ONCE, "loss=0.3"),
        (Semantics.AT_MOST_ONCE, "loss=0.3"),
        (Semantics.EXACTLY_ONCE, "loss=0.2,app_fail=0.2"),
        (Semantics.AT_LEAST_ONCE, "loss=0.2,app_fail=0.2"),
        (Semantics.MAYBE, "loss=0.2"),
    ],
)
def test_sim_rates_agree_with_the_analytic_prediction(semantics: Semantics, spec: str) -> None:
    """Measured counts lie within 4 standard errors of the prediction."""
    faults = FaultSpec.parse(spec)
    ops, attempts = 3000, 3
    policy = RetryPolicy.from_name("fixed", timeout=0.05)
    cell = Cell("sim-udp", semantics, faults, policy, attempts, ops, 8, 3)
    audit = run_cell(cell).audit
    predicted = predict(
        semantics.value, faults.loss, cell.attempts_allowed, app_fail=faults.app_fail
    )
    for field in ("ok", "failed", "unknown", "duplicated", "phantom"):
        measured = getattr(audit, field)
        assert agrees(measured, ops, getattr(predicted, field)), (field, measured, predicted)
    # Means: attempts and executions per op within 4 standard errors too.
    assert abs(audit.attempts / ops - predicted.attempts) < 4 * (predicted.attempts / ops) ** 0.5
    assert audit.lost == 0
