"""experiments.framework.options: how a run records the command that reproduces it."""

from __future__ import annotations

import sys
import types

import pytest

from experiments.framework.options import command_line


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
