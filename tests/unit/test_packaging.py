"""Packaging (issue 15, item 11): console scripts, licence, the documents --help
points to, and the line that says a plot was skipped.

The console scripts' targets and the documents are checked from the source
tree (fast); ``test_the_wheel_...`` builds a wheel with pip in a temporary
directory and reads it (slow: a build in a fresh environment).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from experiments.framework import plots
from services.programs import cli
from transports.docs import doc_path
from transports.proxy import build_parser as proxy_parser

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
SHIPPED_DOCS = ["transports/PROTOCOL.md", "transports/FAULTS.md"]


def test_every_program_has_a_console_script_with_one_prefix() -> None:
    assert all(name.startswith("testbed-") for name in SCRIPTS)
    modules = {target.split(":")[0] for target in SCRIPTS.values()}
    # Each python -m entry point a user runs (README) has its script.
    for module in [
        "services.programs.cli",
        "transports.proxy",
        "transports.netns",
        "experiments.retries",
        "experiments.crashes",
        "experiments.reply_cache",
        "experiments.kernel",
        "experiments.tcp_model",
        "experiments.compare",
        "experiments.bench.throughput",
        "experiments.bench.fault_layer",
        "experiments.bench.long_checks",
        "experiments.bench.roundtrip",
    ]:
        assert module in modules, module


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_console_script_target_is_a_function(name: str) -> None:
    module, function = SCRIPTS[name].split(":")
    assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize(
    ("main", "command"), [(cli.serve_main, "serve"), (cli.client_main, "client")]
)
def test_serve_and_client_scripts_take_the_subcommands_options(
    main: object, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: testbed-{command} ")
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    same = capsys.readouterr().out
    # The same options as python -m services COMMAND (usage lines aside).
    assert text.split("options:")[1] == same.split("options:")[1]


def test_licence_file_and_metadata() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the retry-testbed authors" in text


def test_help_points_to_documents_that_exist_where_installed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    faults = doc_path("FAULTS.md")
    assert Path(faults).is_file() and Path(faults).is_absolute()
    for command in ("serve", "client"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert faults in capsys.readouterr().out  # a path has no space: never wrapped
    assert faults in proxy_parser().format_help()
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]["transports"]
    assert sorted(package_data) == sorted(Path(doc).name for doc in SHIPPED_DOCS)


def test_a_skipped_plot_says_so_and_how_to_get_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    panel = plots.Panel("t", "x", "y", [plots.Series("s", [1.0], [2.0])])
    path = tmp_path / "figure.png"
    assert plots.save(plots.Plot([[panel]], (4.0, 3.0)), path) is None
    err = capsys.readouterr().err
    assert not path.exists()
    assert "plot skipped" in err and str(path) in err
    assert "pip install '.[plot]'" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_wheel_holds_the_docs_the_licence_and_the_console_scripts(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("services", "transports", "experiments"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("retry_testbed-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    for doc in SHIPPED_DOCS:
        assert doc in names, doc
    assert f"{info}/licenses/LICENSE" in names
    assert "License-Expression: MIT" in metadata
    for name, target in SCRIPTS.items():
        assert f"{name} = {target}" in entry_points
    assert not any(name.startswith(("tests/", "results/")) for name in names)
