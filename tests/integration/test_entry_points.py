"""Every ``python -m`` entry point of the project answers ``--help`` cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Each test starts server or client processes: seconds per test.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "transports", "experiments")


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


@pytest.mark.parametrize("module", entry_points())
def test_help_exits_0_without_traceback(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "usage:" in done.stdout
