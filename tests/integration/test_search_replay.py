"""Replays of fault schedules over real TCP and UDP loopback sockets agree with the simulator.

Each reference counterexample (results/search.md) runs on the four: sim-udp,
real udp, sim-tcp, real tcp; per deposit the ledger rows and what the client
was told must match between each real transport and its simulator mode, and
the transports differ only where TCP's rules say so. About a second each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from experiments.search import replay as replay_module
from experiments.search.bank import BankTemplate, Model, Workload
from experiments.search.cli import main
from experiments.search.config import DEFAULT_TIMEOUT
from experiments.search.replay import Replayer, signature
from transports.retry import RetryPolicy
from transports.schedule import FaultSchedule
from transports.semantics import Semantics
from transports.sim import CrashPoint

#: Schedules replayed on real TCP and UDP sockets in real time: ~3 s for the module.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bank() -> Iterator[BankTemplate]:
    with BankTemplate.temporary(2) as template:
        yield template


def replayer(
    bank: BankTemplate, semantics: Semantics, model: Model = Model.TCP, clients: int = 1
) -> Replayer:
    policy = RetryPolicy.from_name("fixed", timeout=DEFAULT_TIMEOUT)
    return Replayer(bank, Workload(semantics, policy), model, clients)


# schedule, semantics, stream model, deposits duplicated on (udp, tcp)
CASES = [
    ("client0 request: #0 dup", Semantics.MAYBE, Model.TCP, (1, 0)),  # TCP absorbs the copy
    ("client0 reply: #0 drop", Semantics.AT_LEAST_ONCE, Model.TCP, (1, 1)),
    ("crash after request #0", Semantics.AT_MOST_ONCE, Model.TCP, (1, 1)),
    ("client0 reply: #0 drop; crash before request #1", Semantics.AT_MOST_ONCE, Model.TCP, (1, 1)),
    # A dropped request is gone over UDP; over TCP it arrives after the RTO,
    # with the 150 ms retry queued behind it.
    ("client0 request: #0 drop", Semantics.AT_LEAST_ONCE, Model.TCP, (0, 1)),
    # A loss that breaks the connection: the retry rides a new one, nothing doubles.
    ("client0 request: #0 drop", Semantics.AT_LEAST_ONCE, Model.TCP_RESET, (0, 0)),
    ("client0 reply: #1 drop; crash after request #3", Semantics.EXACTLY_ONCE, Model.TCP, (0, 0)),
]


@pytest.mark.parametrize(("text", "semantics", "model", "duplicated"), CASES)
def test_real_sockets_agree_with_the_simulator(
    bank: BankTemplate,
    text: str,
    semantics: Semantics,
    model: Model,
    duplicated: tuple[int, int],
) -> None:
    schedule = FaultSchedule.parse(text)
    result = replayer(bank, semantics, model).replay(schedule)
    runs = result.runs
    for real in ("udp", "tcp"):
        assert signature(runs[real]) == signature(runs[f"sim-{real}"]), real
        assert runs[real].crashes == runs[f"sim-{real}"].crashes
        assert runs[real].integrity == "ok"
        assert result.agree(real)
    assert (runs["udp"].audit.duplicated, runs["tcp"].audit.duplicated) == duplicated
    assert all(run.audit.lost == 0 for run in runs.values())


def test_a_disagreement_is_seen(bank: BankTemplate) -> None:
    # The check is not vacuous: a different schedule on the real side shows up.
    at_least_once = replayer(bank, Semantics.AT_LEAST_ONCE)
    sim = at_least_once.run("sim-udp", FaultSchedule.parse("client0 reply: #0 drop"))
    real = at_least_once.run("udp", FaultSchedule())
    assert signature(sim) != signature(real)


def test_two_clients_replay(bank: BankTemplate) -> None:
    schedule = FaultSchedule.parse("client0 reply: #1 drop; client1 request: #0 dup")
    result = replayer(bank, Semantics.AT_LEAST_ONCE, clients=2).replay(schedule)
    assert result.agree("udp") and result.agree("tcp")
    assert result.runs["udp"].audit.duplicated == 2 and result.runs["tcp"].audit.duplicated == 1


def test_scheduled_crash_points_match_the_simulator(bank: BankTemplate) -> None:
    schedule = FaultSchedule.parse("crash before request #0; crash after request #2")
    run = replayer(bank, Semantics.AT_MOST_ONCE).run("udp", schedule)
    assert run.crashes == ((0, CrashPoint.BEFORE_APPLY), (2, CrashPoint.AFTER_APPLY))


def test_replay_command_prints_each_audit_and_the_transport_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["replay", "client0 request: #0 dup", "--semantics", "maybe"])
    out = capsys.readouterr().out
    assert status == 0
    for where in ("sim-udp", "udp", "sim-tcp", "tcp"):
        assert f"\n{where}: no-duplicate " in out
    assert "udp: no-duplicate BROKEN" in out and "\ntcp: no-duplicate holds" in out
    assert "udp agrees with sim-udp" in out and "tcp agrees with sim-tcp" in out
    assert "TCP and UDP differ, because of the transport:" in out
    assert "c0-0: applied 2x, told ok over UDP; applied 1x, told ok over TCP" in out
    assert "1 duplicates absorbed by TCP" in out


def test_a_replay_that_runs_too_long_is_stopped(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "REPLAY_SECONDS", 0.3)
    status = main(["replay", "client0 request: #0 delay 2s", "--on", "udp"])
    err = capsys.readouterr().err
    assert status == 2 and "took longer than" in err and "Traceback" not in err
