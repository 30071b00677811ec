"""Experiment command lines: the argparse types, how a run records its command, and each
experiment's --help and refusals (defaults shown, valid choices named, no internal names)."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import types
from pathlib import Path

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


# --- every experiment's command line --------------------------------------------------

#: The experiments' command lines: module -> its main.
EXPERIMENTS = (
    "retries", "kernel", "crashes", "reply_cache", "tcp_model", "throughput",
    "long_checks", "roundtrip", "fault_layer", "compare", "analytic", "outages",
)  # fmt: skip
#: Words of the code, not of the user: a help text that shows one dumps a docstring.
INTERNAL = ("``", "drive_paired", "NetnsPair", "experiments.bench", "experiments.framework",
            "Traceback", "_record", "Config")  # fmt: skip


def run_main(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m experiments.MODULE ARGV`` in this process: exit status and output."""
    main = importlib.import_module(f"experiments.{module}").main
    try:
        status = main(argv)
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    out = capsys.readouterr()
    return status, out.out + out.err


def parser_of(module: str) -> argparse.ArgumentParser:
    """The experiment's parser (the throughput command's lives with its config)."""
    name = "experiments.bench.config" if module == "throughput" else f"experiments.{module}"
    parser: argparse.ArgumentParser = importlib.import_module(name).build_parser()
    return parser


def option_helps(module: str) -> list[argparse.Action]:
    return [a for a in parser_of(module)._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("module", EXPERIMENTS)
def test_help_speaks_to_users(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, text = run_main(module, ["--help"], capsys)
    assert status == 0
    assert text.startswith(f"usage: python -m experiments.{module}")
    for word in INTERNAL:
        assert word not in text, f"{module} --help shows {word!r}"


@pytest.mark.parametrize(
    "module", ["retries", "kernel", "crashes", "reply_cache", "tcp_model", "throughput", "outages"]
)
def test_every_option_has_help_and_shows_its_default(module: str) -> None:
    for action in option_helps(module):
        assert action.help, f"{module} {action.option_strings[0]} has no help"
    text = parser_of(module).format_help()
    shown = [a for a in option_helps(module) if a.default not in (None, False, "")]
    for action in shown:
        assert f"(default: {action.default})" in " ".join(text.split()), action.dest


def test_kernel_offers_neither_a_fault_backend_nor_the_simulator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, text = run_main("kernel", ["--help"], capsys)
    assert "--fault-backend" not in text and "sim-tcp" not in text
    status, text = run_main("kernel", ["--transports", "sim-tcp"], capsys)
    assert status == 2 and "'sim-tcp' is not one of tcp, udp" in text


#: A refused value and the valid ones the error must name.
BAD_CHOICES = (
    ("retries", ["--semantics", "twice"], ("maybe", "at-least-once", "at-most-once",
                                           "exactly-once")),
    ("retries", ["--transports", "tcp,quic"], ("tcp", "udp", "sim-tcp", "sim-udp")),
    ("retries", ["--fault-backend", "docker"], ("in-process", "kernel")),
    ("crashes", ["--transports", "tcp,sctp"], ("sim", "tcp", "udp")),
    ("crashes", ["--crash-point", "middle"], ("before-apply", "after-apply", "random")),
    ("tcp_model", ["--semantics", "once"], ("maybe", "exactly-once")),
    ("tcp_model", ["--tcp-driver", "maybe"], ("auto", "run", "reuse", "off")),
    ("throughput", ["--services", "text,ftp"], ("text", "numbers", "bank")),
    ("long_checks", ["--transports", "quic"], ("tcp", "udp")),
    ("roundtrip", ["--transports", "quic"], ("tcp", "udp")),
    ("fault_layer", ["quic"], ("tcp", "udp")),
    ("compare", ["--format", "html"], ("simple", "github")),
    ("analytic", ["--semantics", "twice"], ("maybe", "at-least-once", "exactly-once")),
)  # fmt: skip


@pytest.mark.parametrize(("module", "argv", "valid"), BAD_CHOICES)
def test_a_bad_choice_is_refused_with_the_valid_ones(
    module: str, argv: list[str], valid: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    status, text = run_main(module, argv, capsys)
    assert status == 2
    assert "Traceback" not in text and "invalid parse_list value" not in text
    error = text.strip().splitlines()[-1]
    for name in valid:
        assert name in error, f"{module} {argv}: {error}"


#: The experiments that write result files, with arguments that keep a run short.
WRITERS = (
    ("retries", ["--quick"]), ("crashes", ["--quick"]), ("reply_cache", ["--quick"]),
    ("outages", ["--quick"]), ("tcp_model", []), ("throughput", []),
)  # fmt: skip


@pytest.mark.parametrize(("module", "argv"), WRITERS)
def test_an_unwritable_out_is_refused_before_the_run(
    module: str, argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under a regular file: no folder can be made there, even by root.
    (tmp_path / "a-file").write_text("")
    status, text = run_main(module, [*argv, "--out", str(tmp_path / "a-file" / "run")], capsys)
    assert status == 2
    assert "is not a folder" in text and "Traceback" not in text
    assert "wrote" not in text  # nothing ran, nothing was written
