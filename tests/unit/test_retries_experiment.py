"""``python -m experiments.retries``: its options, cells, predictions, tables and reading.

Runs only simulator cells (no sockets): the real transports run in the
integration tests and the full experiment.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from experiments import retries
from experiments.audit import Audit
from experiments.cell_record import BankRecord, model_prediction
from experiments.retries_reading import reading
from experiments.retries_report import render
from experiments.runner import Cell
from transports.faults import FaultSpec
from transports.retry import RetryPolicy, parse_policy
from transports.semantics import Semantics

ENV = {"python": "3.11", "platform": "test", "cpus": 2}


def config(*argv: str) -> retries.RetriesConfig:
    return retries.config(retries.build_parser().parse_args(list(argv)))


def test_defaults_run_both_transports_and_both_simulators_at_two_timeouts() -> None:
    cfg = config()
    assert cfg.transports == ("tcp", "udp", "sim-tcp", "sim-udp")
    assert cfg.timeouts == (0.05, 1.0)  # either side of TCP's 200 ms retransmission
    cells = retries.cells(cfg)
    assert len(cells) == 4 * 2 * 4 * len(cfg.loss)
    assert {(c.transport, c.policy.timeout) for c in cells} == {
        (t, s) for t in cfg.transports for s in cfg.timeouts
    }
    assert all(c.policy.name == "fixed" for c in cells)


def test_each_cell_gets_its_timeout_and_keeps_the_policys_other_parameters() -> None:
    cfg = config("--timeouts", "20ms,0.3,2s", "--policy", "expo:base=10ms,cap=100ms")
    assert cfg.timeouts == (0.02, 0.3, 2.0)
    policies = {c.policy for c in retries.cells(cfg)}
    base = parse_policy("expo:base=10ms,cap=100ms")
    assert policies == {dataclasses.replace(base, timeout=t) for t in (0.02, 0.3, 2.0)}


def test_quick_is_small() -> None:
    cfg = config("--quick")
    assert cfg.ops == retries.QUICK_OPS and cfg.loss == retries.QUICK_LOSS
    assert cfg.timeouts == (0.05, 1.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "duration 0 is outside (0, 60] seconds"),
        ("-50ms", "duration -50ms is outside"),
        ("90", "duration 90 is outside (0, 60] seconds"),  # 90 s: meant 90 ms?
        ("fast", "'fast' is not a duration such as 50ms, 1s, 500us or 0.05"),
        ("nan", "duration nan is outside"),
        (",", "expected a comma-separated list"),
    ],
)
def test_bad_timeouts_are_refused_with_a_clear_message(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        retries.main([f"--timeouts={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --timeouts: {message}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--timeouts", "50ms,0.05"], "--timeouts names a timeout twice: 50ms, 50ms"),
        (["--policy", "fixed:timeout=1s"], "give the timeout with --timeouts"),
        (["--policy", "fixed:bogus=1"], "bad policy parameter"),
        (["--fault-backend", "kernel", "--transports", "tcp,sim-tcp"], "simulator has no kernel"),
    ],
)
def test_refused_command_lines(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert retries.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_other_list_options_report_the_bad_item(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        retries.main(["--transports", "tcp,sim"])
    assert "argument --transports: 'sim' is not one of tcp, udp, sim-tcp, sim-udp" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        retries.main(["--loss", "0.1,2"])
    assert "argument --loss: probability 2 is outside [0, 1]" in capsys.readouterr().err


# --- which model predicts a cell ----------------------------------------------------------


def cell(transport: str, spec: str = "loss=0.1", policy: str = "fixed:timeout=1s") -> Cell:
    return Cell(
        transport, Semantics.AT_LEAST_ONCE, FaultSpec.parse(spec), parse_policy(policy), 5, 100,
        10, 1,
    )  # fmt: skip


def test_tcp_cells_get_the_tcp_model_and_udp_cells_the_analytic_one() -> None:
    tcp, sim_tcp = model_prediction(cell("tcp")), model_prediction(cell("sim-tcp"))
    udp, sim_udp = model_prediction(cell("udp")), model_prediction(cell("sim-udp"))
    assert tcp == sim_tcp and udp == sim_udp
    assert not isinstance(tcp, str) and not isinstance(udp, str)
    assert tcp.duplicated < udp.duplicated  # at 1 s TCP hides most losses UDP retries
    # Below TCP's first retransmission every late round trip becomes a duplicate.
    short = model_prediction(cell("tcp", policy="fixed:timeout=50ms"))
    assert not isinstance(short, str) and short.duplicated > udp.duplicated
    # tcp=reset: a lost message resets the connection, as the analytic model assumes.
    assert model_prediction(cell("tcp", "loss=0.1,tcp=reset")) == udp


@pytest.mark.parametrize(
    ("transport", "spec", "policy", "reason"),
    [
        ("tcp", "loss=0.1", "fixed:timeout=1s,on-timeout=reconnect", "on-timeout=reconnect"),
        ("sim-tcp", "loss=0.1", "expo-full:timeout=1s", "random attempt times"),
        ("sim-tcp", "loss=0.1,delay=1ms", "fixed:timeout=1s", "TCP model: faults beyond loss"),
        ("sim-tcp", "loss=1", "fixed:timeout=1s", "loss 1"),
        ("udp", "loss=0.1,dup=0.1", "fixed:timeout=1s", "faults beyond independent loss"),
        ("udp", "loss=0.1,partition=1s", "fixed:timeout=1s", "a partition"),
        ("sim-tcp", "loss=0.1,partition=1s", "fixed:timeout=1s", "a partition"),
    ],
)
def test_cells_without_a_prediction_say_why(
    transport: str, spec: str, policy: str, reason: str
) -> None:
    found = model_prediction(cell(transport, spec, policy))
    assert isinstance(found, str) and reason in found


def test_tcp_absorbs_duplicates_so_its_prediction_stays() -> None:
    assert not isinstance(model_prediction(cell("sim-tcp", "loss=0.1,dup=0.1,reorder=0.1")), str)


# --- the run, its tables and reading -----------------------------------------------------


def test_a_simulator_run_writes_tables_side_by_side_and_the_reading(tmp_path: Path) -> None:
    argv = ["--transports", "sim-tcp,sim-udp", "--semantics", "maybe,at-least-once"]
    argv += ["--loss", "0,0.3", "--ops", "100", "--clients", "10", "--jobs", "1"]
    assert retries.main([*argv, "--out", str(tmp_path), "--no-progress"]) == 0
    text = (tmp_path / "retries.md").read_text()
    for heading in (
        "## sim-tcp, timeout 50 ms\n",
        "## sim-tcp, timeout 1 s\n",
        "## sim-udp, timeout 1 s\n",
        "## sim-tcp vs sim-udp, timeout 50 ms",
        "## sim-tcp vs sim-udp, timeout 1 s",
        "## Deposits and withdrawals, timeout 50 ms",
        "## What this run shows",
        "## How to read the tables",
    ):
        assert heading in text
    # Real Markdown: pipe tables, no fenced terminal output; the reading comes first.
    assert "```" not in text and "| semantics " in text
    assert text.index("## What this run shows") < text.index("## sim-tcp, timeout 50 ms")
    # The header says what a cell is: 100 operations in total, 10 from each client.
    assert "100 operations per cell" in text and "10 from each of 10 concurrent clients" in text
    assert "predicted by the TCP model" in text and "predicted by the analytic model" in text
    cells = json.loads((tmp_path / "retries.json").read_text())["cells"]
    assert {(c["transport"], c["timeout"]) for c in cells} == {
        (t, s) for t in ("sim-tcp", "sim-udp") for s in (0.05, 1.0)
    }
    assert all("predicted" in c and "no_prediction" not in c for c in cells)
    # The reading's numbers are the run's own.
    alo = {
        (c["transport"], c["timeout"], c["loss"]): c
        for c in cells
        if c["semantics"] == "at-least-once"
    }
    tcp, udp = alo[("sim-tcp", 0.05, 0.3)], alo[("sim-udp", 0.05, 0.3)]
    line = text.split("## What this run shows")[1].splitlines()[2]
    assert line.startswith("- At a 50 ms timeout and loss 0.3, at-least-once over sim-tcp")
    assert f"sim-tcp duplicated {tcp['duplicated']} (of 100; sim-udp {udp['duplicated']})" in line


def record(transport: str, timeout: float, duplicated: int, unknown: int, p99: float,
           semantics: str = "at-least-once", loss: float = 0.3) -> BankRecord:  # fmt: skip
    audit = Audit(
        ops=200, ok=200 - unknown, failed=0, unknown=unknown, executions=200 + duplicated,
        duplicated=duplicated, phantom=unknown, phantom_failed=0, lost=0, money_drift=0,
        attempts=300, p50_ms=1.0, p99_ms=p99, max_ms=p99,
    )  # fmt: skip
    policy = RetryPolicy.from_name("fixed", timeout=timeout)
    return BankRecord(
        transport=transport, semantics=semantics, loss=loss, faults=f"loss={loss}",
        policy=policy.describe(), timeout=timeout, max_attempts=5, clients=20, seed=1,
        audit=audit, seconds=1.0,
    )  # fmt: skip


def test_the_reading_names_a_mechanism_only_where_the_numbers_point_its_way() -> None:
    records = [
        record("tcp", 0.05, 101, 132, 258.0), record("udp", 0.05, 65, 10, 255.0),
        record("tcp", 1.0, 25, 6, 1700.0), record("udp", 1.0, 65, 10, 5008.0),
        record("sim-tcp", 0.05, 173, 140, 250.0), record("sim-udp", 0.05, 65, 10, 250.0),
        record("sim-tcp", 1.0, 26, 6, 5000.0), record("sim-udp", 1.0, 65, 10, 5000.0),
        record("tcp", 1.0, 0, 0, 9.0, loss=0.0), record("udp", 1.0, 0, 0, 9.0, loss=0.0),
    ]  # fmt: skip
    first, second, third = reading(records)
    assert first == (
        "At a 50 ms timeout and loss 0.3, at-least-once over tcp duplicated 101 (of 200; udp "
        "65), left 132 unknown (udp 10) and took p99 258 ms (udp 255 ms): the timeout is "
        "shorter than TCP's 200 ms retransmission timeout, so the retry queues behind the lost "
        "message on the same connection, and both execute."
    )
    assert second.startswith("At 1 s, tcp duplicated 25 (of 200; udp 65), left 6 unknown")
    assert "the timeout outlasts TCP's 200 ms retransmission timeout" in second
    assert third == (
        "The simulator (virtual time, same fault decisions) orders them the same way: sim-tcp "
        "duplicated 173 / 26, sim-udp 65 / 65 (at 50 ms and 1 s)."
    )
    # Numbers against the mechanism: no mechanism claimed.
    flipped = [record("tcp", 0.05, 10, 5, 1.0), record("udp", 0.05, 65, 10, 1.0)]
    (line,) = reading(flipped)
    assert line.endswith(": tcp had fewer duplicated than udp here.")


def test_no_reading_without_a_pair_or_without_loss() -> None:
    assert reading([record("tcp", 0.05, 1, 1, 1.0), record("sim-udp", 0.05, 1, 1, 1.0)]) == []
    no_loss = [record(t, 0.05, 0, 0, 1.0, loss=0.0) for t in ("tcp", "udp")]
    assert reading(no_loss) == []


def test_the_reading_of_maybe_compares_unknown_outcomes() -> None:
    records = [
        record("sim-tcp", 0.05, 0, 170, 50.0, semantics="maybe"),
        record("sim-udp", 0.05, 0, 100, 50.0, semantics="maybe"),
    ]
    (line,) = reading(records)
    assert "maybe over sim-tcp" in line and "what the client sends next waits behind it" in line


def test_a_caption_says_why_a_cell_has_no_prediction() -> None:
    r = dataclasses.replace(
        record("udp", 0.05, 1, 1, 1.0), no_prediction="faults beyond independent loss"
    )
    text = render([r], ENV)
    assert "No prediction where faults beyond independent loss." in text
