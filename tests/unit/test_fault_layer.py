"""experiments.bench.fault_layer: the server path it prices, and its two measures."""

from __future__ import annotations

import asyncio

import pytest

from experiments.bench import fault_layer
from transports.wire import decode_reply


class Recording(fault_layer._NullTransport):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data)[4:])  # drop the length prefix

    def sendto(self, data: bytes | bytearray | memoryview, addr: object = None) -> None:
        self.sent.append(bytes(data))


@pytest.mark.parametrize("transport", fault_layer.TRANSPORTS)
@pytest.mark.parametrize("kind", fault_layer.KINDS)
def test_every_path_answers_every_request(
    transport: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = Recording()
    monkeypatch.setattr(fault_layer, "_NullTransport", lambda: recording)

    async def run() -> None:
        handle = fault_layer.server_path(transport, kind)
        for message in fault_layer.messages(5):
            handle(message)

    asyncio.run(run())
    replies = [decode_reply(data) for data in recording.sent]
    assert [r.id for r in replies] == [f"c1-{i}" for i in range(5)]
    assert all(r.result == {"lower": "hello world", "upper": "HELLO WORLD"} for r in replies)


def test_cpu_cost_rows() -> None:
    rows = fault_layer.cpu_cost(repeat=2, batch=20)
    assert [r.transport for r in rows] == list(fault_layer.TRANSPORTS)
    for r in rows:
        assert r.without_us > 0 and r.with_us > 0
        assert r.ratio == pytest.approx(r.without_us / r.with_us, abs=0.01)


def test_instruction_cost_is_skipped_without_valgrind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fault_layer.shutil, "which", lambda name: None)
    assert fault_layer.instruction_cost() is None


def test_child_mode_runs_n_requests() -> None:
    assert fault_layer.main(["udp", "with", "3"]) == 0
    assert fault_layer.main(["tcp", "none", "3"]) == 0
