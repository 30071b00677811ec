"""Running the kernel backend's administrative commands (ip, tc, nft, iptables), and its errors.

Every command goes through a ``Runner`` so tests can record the calls instead
of touching the kernel.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class NetnsError(RuntimeError):
    """A namespace, link or rule could not be set up; the message quotes the command."""


class UnsupportedFault(NetnsError):
    """The fault spec asks for something this kernel backend cannot do here."""


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


#: Runs one command (argv, optional stdin text); injectable so tests can record calls.
Runner = Callable[[Sequence[str], str | None], CommandResult]


def run_command(argv: Sequence[str], stdin: str | None = None) -> CommandResult:
    """Run a short administrative command, bounded in time, never through a shell."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=15, check=False
        )
    except FileNotFoundError as err:
        return CommandResult(tuple(argv), 127, "", str(err))
    except subprocess.TimeoutExpired:
        return CommandResult(tuple(argv), 124, "", "timed out after 15 s")
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr.strip())


def check(result: CommandResult) -> CommandResult:
    """``result`` itself, or a ``NetnsError`` quoting the command when it failed."""
    if result.returncode != 0:
        raise NetnsError(f"`{' '.join(result.argv)}` failed ({result.returncode}): {result.stderr}")
    return result
