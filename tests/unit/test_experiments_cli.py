"""experiments.framework.options: the argparse types, and how a run records its command."""

from __future__ import annotations

import argparse
import re
import sys
import types

import pytest

from experiments.framework.options import command_line, csv_list, duration, probability


def test_a_module_run_is_recorded_as_python_dash_m(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name="experiments.retries")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/home/me/repo/experiments/retries.py", "--quick"])
    assert command_line() == "python -m experiments.retries --quick"


def test_a_script_run_keeps_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["tools/run.py", "--seed", "3"])
    assert command_line() == "python tools/run.py --seed 3"


def test_duration_reads_units_and_refuses_what_is_not_a_timeout() -> None:
    assert [duration(t) for t in ("50ms", "1s", "500us", "0.05", " 2 s")] == [
        0.05, 1.0, 0.0005, 0.05, 2.0,
    ]  # fmt: skip
    for text, message in (
        ("0", "outside (0, 60] seconds"),
        ("61", "outside (0, 60] seconds"),
        ("inf", "outside"),
        ("ms", "is not a duration"),
        ("1 minute", "is not a duration"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            duration(text)


def test_a_list_option_reports_the_bad_item_in_argparse() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", type=csv_list(probability))
    with pytest.raises(argparse.ArgumentTypeError, match=r"probability 1\.5 is outside"):
        csv_list(probability)("0.1,1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a comma-separated list"):
        csv_list(probability)(" , ")
    assert parser.parse_args(["--loss", "0, 0.5"]).loss == [0.0, 0.5]
