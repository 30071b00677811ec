"""Partition schedules replayed on real TCP and UDP loopback sockets agree with the simulator.

The window is timed from the run's start in both (the simulator's time 0, the
replay's loop time when its clients start), and its edges sit halfway between
the client's retries. About a second each.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from experiments.search.bank import BankTemplate, Model, Workload
from experiments.search.cli import main
from experiments.search.config import DEFAULT_TIMEOUT
from experiments.search.replay import Replayer, signature
from transports.retry import RetryPolicy
from transports.schedule import FaultSchedule
from transports.semantics import Semantics

#: Partitions replayed on real sockets, waiting out their windows: ~4 s for the module.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bank() -> Iterator[BankTemplate]:
    with BankTemplate.temporary(1) as template:
        yield template


# schedule, semantics, reply cache retention, deposits duplicated on (udp, tcp)
CASES = [
    # Replies cut until the 225 ms reply cache has let the first one go: the
    # retry at 300 ms runs the deposit again, on both transports.
    ("client0 reply: partition 0ms-225ms", Semantics.AT_MOST_ONCE, 0.225, (1, 1)),
    # The same with the cache's default retention: every retry is answered from it.
    ("client0 reply: partition 0ms-225ms", Semantics.AT_MOST_ONCE, None, (0, 0)),
    # Requests cut for 75 ms: over UDP the first copy is gone and the retry
    # is the only one; over TCP it arrives after the RTO, the retry behind it.
    ("client0 request: partition 0ms-75ms", Semantics.AT_LEAST_ONCE, None, (0, 1)),
    ("client0 reply: partition 0ms-525ms", Semantics.EXACTLY_ONCE, 0.225, (0, 0)),
]


def cut(links: dict[str, dict[str, int]]) -> int:
    """Messages (copies, over TCP) the partition cut, over every link."""
    return sum(counts.get("partition", 0) for counts in links.values())


@pytest.mark.parametrize(("text", "semantics", "retention", "duplicated"), CASES)
def test_partition_replays_agree_with_the_simulator(
    bank: BankTemplate,
    text: str,
    semantics: Semantics,
    retention: float | None,
    duplicated: tuple[int, int],
) -> None:
    policy = RetryPolicy.from_name("fixed", timeout=DEFAULT_TIMEOUT)
    workload = Workload(semantics, policy, retention=retention)
    result = Replayer(bank, workload, Model.TCP, 1).replay(FaultSchedule.parse(text))
    runs = result.runs
    for real in ("udp", "tcp"):
        assert signature(runs[real]) == signature(runs[f"sim-{real}"]), real
        assert cut(runs[real].links) == cut(runs[f"sim-{real}"].links) >= 1, real
        assert result.agree(real)
    assert (runs["udp"].audit.duplicated, runs["tcp"].audit.duplicated) == duplicated
    assert all(run.audit.lost == 0 and run.audit.unknown == 0 for run in runs.values())


def test_the_replay_says_where_the_transport_makes_the_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["replay", "client0 request: partition 0ms-75ms", "--model", "tcp"])
    out = capsys.readouterr().out
    assert status == 0
    assert "udp agrees with sim-udp" in out and "tcp agrees with sim-tcp" in out
    assert "TCP and UDP differ, because of the transport:" in out
    assert "c0-0: applied 1x, told ok over UDP; applied 2x, told ok over TCP" in out
    assert "client0/request 4 messages, 1 cut by the partition;" in out
