"""Every ``python -m`` entry point, subcommand and console script of the project
answers ``--help`` cleanly: exit 0, a usage line, no traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

#: Each test starts server or client processes: seconds per test.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "transports", "experiments")
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


def entry_points() -> list[str]:
    """Modules runnable with ``python -m``: a package's ``__main__`` or a module's main guard."""
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if path.name == "__main__.py":
                found.add(".".join(parts[:-1]))
            elif '__name__ == "__main__"' in path.read_text():
                found.add(".".join(parts))
    return sorted(found)


def test_the_known_entry_points_are_found() -> None:
    points = entry_points()
    for name in ("services", "transports.proxy", "transports.netns", "experiments.fault_layer"):
        assert name in points


def helps(command: list[str]) -> str:
    done = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "usage:" in done.stdout
    return done.stdout


@pytest.mark.parametrize("module", entry_points())
def test_help_exits_0_without_traceback(module: str) -> None:
    helps([sys.executable, "-m", module])


@pytest.mark.parametrize("command", ["serve", "client"])
def test_subcommand_help_exits_0_without_traceback(command: str) -> None:
    helps([sys.executable, "-m", "services", command])


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_help_exits_0_without_traceback(script: str) -> None:
    path = Path(sys.executable).parent / script
    assert path.exists(), f"{script} is not installed: pip install -e . (again) to get it"
    # The usage line names the command the user typed, not ``python -m module``.
    assert helps([str(path)]).startswith(f"usage: {script}")
