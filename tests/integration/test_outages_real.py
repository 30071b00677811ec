"""experiments.outages on real loopback sockets: a partition in real time, audited."""

from __future__ import annotations

import pytest

from experiments.outages_cell import Load, OutageCell, run_outage
from transports.faults import Cut
from transports.semantics import Semantics

#: Real servers and clients through a 2 s partition: seconds per test.
pytestmark = pytest.mark.slow

LOAD = Load(
    clients=20,
    interval=0.1,
    partition_at=0.3,
    after=0.5,
    timeout=0.05,
    base=0.05,
    cap=1.0,
    max_attempts=6,
    retention=1.0,
    seed=5,
)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_reply_only_partition_on_real_sockets(transport: str) -> None:
    """Requests arrive and apply, replies die: what the clients gave up on is a phantom."""
    cell = OutageCell(transport, "expo", False, Semantics.EXACTLY_ONCE, Cut.REPLIES, 2.0)
    record = run_outage(LOAD, cell)
    assert record.audit.unknown > 0
    assert record.audit.phantom == record.audit.unknown
    assert record.audit.duplicated == 0 and record.audit.lost == 0
    assert record.steady > 0


def test_udp_partition_stops_the_server_load() -> None:
    cell = OutageCell("udp", "fixed", False, Semantics.EXACTLY_ONCE, Cut.BOTH, 1.0)
    record = run_outage(LOAD, cell)
    # The windows inside the cut, less 100 ms at its start: a request sent just
    # before it may still be read late by a busy server.
    first, last = int((LOAD.partition_at + 0.1) / 0.01), int((LOAD.partition_at + 1.0) / 0.01)
    inside = record.load[first:last]
    assert inside and sum(inside) == 0
    assert record.peak > 0 and record.audit.ok > 0
