"""python -m experiments.search reference: one command writes results/search.* (real replays)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.search.cli import main

pytestmark = pytest.mark.slow  # eleven searches and seven replays on real sockets: 5-20 s


def test_reference_writes_every_search_and_its_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reference", "--examples", "60", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "real = sim" in out
    document = json.loads((tmp_path / "search.json").read_text())
    assert document["environment"]["argv"] == (
        f"python -m experiments.search reference --examples 60 --out {tmp_path}"
    )
    found = {
        (s["semantics"], s["model"], s["faults"], s["directions"], s["timeout_ms"]): s
        for s in document["searches"]
        if s["retention_ms"] is None
    }
    assert len(document["searches"]) == 11 and len(found) == 10
    crashy = "drop,dup,crash-before,crash-after"
    both = "reply,request"
    expected = {
        ("maybe", "datagram", crashy, both, 150.0): "client0 request: #0 dup",
        ("at-least-once", "datagram", crashy, both, 150.0): "client0 reply: #0 drop",
        ("at-most-once", "datagram", crashy, both, 150.0): "crash after request #0",
        ("exactly-once", "datagram", crashy, both, 150.0): "",
        ("at-least-once", "tcp", "drop", "request", 150.0): "client0 request: #0 drop",
        ("at-least-once", "tcp", "drop", both, 1000.0): "",
        ("at-most-once", "datagram", "partition", both, 150.0): "",
        ("exactly-once", "datagram", crashy + ",partition", both, 150.0): "",
    }
    for key, schedule in expected.items():
        assert found[key]["counterexample"] == schedule, key
    (short_cache,) = [s for s in document["searches"] if s["retention_ms"] == 225.0]
    assert short_cache["counterexample"] == "client0 reply: partition 0ms-225ms"
    for search in document["searches"]:
        if search["counterexample"]:
            assert search["udp_agrees"] and search["tcp_agrees"], search
            assert search["duplicated"]["sim-udp"] + search["duplicated"]["sim-tcp"] >= 1
    markdown = (tmp_path / "search.md").read_text()
    assert markdown.startswith("# Fault-schedule searches") and "DISAGREES" not in markdown
    assert "| semantics " in markdown and "## How to read the tables" in markdown
    assert "- In 7 of the 7 counterexamples the real UDP and TCP replays agree" in markdown
    assert "### 9. at-most-once over datagram with partition, reply cache 225 ms" in markdown
    assert markdown.count("```text\n") == 11
    assert (tmp_path / "search.csv").read_text().startswith("semantics,model,faults")
