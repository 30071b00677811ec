"""The attack benchmarks' verdicts, tables and argument errors (no servers)."""

from __future__ import annotations

import pytest

from experiments.bench import churn, login_flood

ROW = {
    "transport": "tcp",
    "flood_host": "127.0.0.1",
    "flood_sent": 6400,
    "deposits_ok": 99,
    "deposits_failed": 1,
    "p50_ms": 0.7,
    "p99_ms": 300.0,
    "max_ms": 4000.0,
    "new_login_s": None,
    "login_tries": 50,
    "sigterm_exit_s": 0.2,
    "server": dict.fromkeys(login_flood.COUNTERS, 0),
}


def test_login_flood_verdicts_say_which_targets_were_missed() -> None:
    assert login_flood.verdicts(ROW) == {
        "deposits_all_ok": False,
        "p99_under_250ms": False,
        "new_login_under_2s": False,
        "sigterm_under_2s": True,
    }
    good = {**ROW, "deposits_failed": 0, "p99_ms": 12.0, "new_login_s": 0.05}
    assert all(login_flood.verdicts(good).values())
    table = login_flood.render([ROW, good], "caption")
    assert "| 1/4 (deposits_all_ok, p99_under_250ms, new_login_under_2s missed) |" in table
    assert "| 4/4 |" in table and "failed (50)" in table


def test_churn_table_counts_every_probe_that_was_not_answered() -> None:
    row = {
        "churners": 3,
        "churn_connects": 100,
        "probes": {"answered": 10, "reset": 2, "refused": 1},
        "server": dict.fromkeys(churn.COUNTERS, 0),
    }
    assert "| 3 | 100 | 13 | 10 | 3 | no |" in churn.render(row, "caption")


@pytest.mark.parametrize(
    "argv",
    [["--transports", "sctp"], ["--flood-hosts", "10.0.0.1"], ["--rate", "0"], ["--seconds", "99"]],
)
def test_login_flood_refuses_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        login_flood.main(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_churn_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        churn.main(["--churners", "50"])
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_login_cost_times_real_logins() -> None:
    cost = login_flood.login_cost(count=3)
    assert 0 < cost["login_median_ms"] <= cost["login_max_ms"]
