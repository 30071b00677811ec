"""Every command the documentation quotes, run as written where it can run here in seconds.

The commands are the lines of the fenced ``sh`` blocks of README.md, docs/*.md,
transports/*.md and experiments/ANALYSIS.md (a line ending in ``\\`` goes on;
a ``#`` after two spaces starts a comment). Each one is classified below, in
``COMMANDS``, an allow-list a reader can check:

* ``RUN``: runs to its end here in seconds; exit 0, no traceback, and the
  output the doc promises where it names one;
* ``SERVE``: a server or proxy that runs until Ctrl-C: started, its listening
  line awaited, then Ctrl-C (SIGINT to its pid): exit 0, no traceback;
* ``LONG`` and ``ROOT``: not run, with the reason (a long experiment, the test
  suite itself, a change to the machine's network namespaces).

The commands of one block run in order, as a reader would run them: servers
first, then the commands that use them. Documented ports (5050, 5051) would
collide on a shared machine, so each server listens on a free port and later
commands of its block are pointed at it: the only change made to a command.
Everything runs in a temporary directory holding a copy of results/, so that
an experiment writes there and never over the committed reference.

A doc command that is not in ``COMMANDS`` fails the test (classify it); so
does an entry that no doc quotes any more, and an unlabelled fenced block
that holds a command (label it ``sh``, or ``text`` for a synopsis).
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Servers and experiments start: tens of seconds for the module.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "transports").glob("*.md")),
    ROOT / "experiments" / "ANALYSIS.md",
]
TIMEOUT = 300.0  # generous: the machine is shared; a command that hangs still ends the test

RUN, SERVE, LONG, ROOT_ONLY = "run", "serve", "long", "root"


@dataclass(frozen=True)
class Kind:
    kind: str
    why: str = ""  # for LONG and ROOT: why it is not run here
    expect: str = ""  # for RUN: text its output must contain


COMMANDS: dict[str, Kind] = {
    # README.md
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[plot]' && "
    ".venv/bin/python -m experiments.retries": Kind(
        LONG, "a new venv and the main experiment (~75 s); its --help and a one-cell run are run"
    ),
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
    ".venv/bin/python -m pytest": Kind(LONG, "the whole test suite (~3.5 min), this test included"),
    "python -m experiments.retries --quick": Kind(LONG, "a smoke run of 15-30 s"),
    "python -m experiments.retries --fault-backend kernel": Kind(
        ROOT_ONLY, "network namespaces (root) and a full run of several minutes"
    ),
    "python -m experiments.retries --transports sim-tcp,sim-udp --timeouts 20ms,200ms,1s,2s": Kind(
        LONG, "16 simulated cells: about 20 s"
    ),
    "python -m experiments.retries --transports udp --semantics at-least-once --timeouts 50ms "
    '--loss 0.1 --faults "dup=0.05,reorder=0.05,delay=1ms,jitter=1ms" --policy expo-full': Kind(
        RUN, expect="wrote results/"
    ),
    "python -m services serve bank --transport udp": Kind(SERVE),
    "python -m services client atm --transport udp": Kind(RUN),
    "printf '1\\n1234\\n2\\n2\\n1\\n4\\n' | python -m services client atm --transport udp": Kind(
        RUN, expect="Your balance is 10002"
    ),
    "python -m services serve text --transport tcp --framing seed": Kind(SERVE),
    ".venv/bin/pip install -e '.[test,dev,plot]'": Kind(
        LONG, "reinstalls the package into the environment running these tests"
    ),
    ".venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy": Kind(
        LONG, "lint and type check of the whole tree (~30 s), CI's own step"
    ),
    '.venv/bin/python -m pytest -m "not slow"': Kind(LONG, "the fast test selection (~1 min)"),
    "python -m pytest tests/property": Kind(LONG, "the property tests, part of the suite (~20 s)"),
    "HYPOTHESIS_PROFILE=long python -m pytest tests/property": Kind(
        LONG, "the property tests with ten times the examples (~4 min)"
    ),
    # docs/CRASHES.md
    "python -m experiments.crashes": Kind(LONG, "the crash experiment (~1 min)"),
    "python -m experiments.crashes --quick": Kind(LONG, "a smoke run of ~20 s"),
    "python -m experiments.crashes --transports tcp --crash-point after-apply "
    "--semantics at-most-once,exactly-once --real-crash 0.2 --real-ops 200": Kind(
        LONG, "real servers killed and restarted: tens of seconds"
    ),
    "python -m services serve bank --transport udp --db bank.sqlite3 "
    "--faults crash=0.1 --crash-point after-apply": Kind(SERVE),
    # docs/FAULT_PROXY.md
    "python -m services serve text --framing seed --port 5051": Kind(SERVE),
    "python -m transports.proxy --transport tcp --listen 127.0.0.1:5050 "
    "--upstream 127.0.0.1:5051 --faults delay=20ms,jitter=10ms --seed 3 "
    "--slice 5 --slice-delay 0.001 --slice-dir request": Kind(SERVE),
    "python -m services serve bank --transport udp --semantics exactly-once --port 5051": Kind(
        SERVE
    ),
    "python -m transports.proxy --transport udp --listen 127.0.0.1:5050 "
    "--upstream 127.0.0.1:5051 --faults loss=0.2,dup=0.4 --seed 2": Kind(SERVE),
    "python -m services client atm --transport udp --port 5050 --timeout 0.2 --attempts 10": Kind(
        RUN
    ),
    "python -m transports.proxy --transport udp --listen 127.0.0.1:5050 "
    "--upstream 127.0.0.1:5051 --faults partition=3s,partition_dir=replies --seed 1": Kind(SERVE),
    "python -m services client atm --transport udp --port 5050 --timeout 0.5 --attempts 10": Kind(
        RUN
    ),
    "python -m transports.netns probe": Kind(RUN, expect="kernel backend:"),
    "python -m transports.netns cleanup": Kind(
        ROOT_ONLY, "deletes network namespaces on a machine shared with other developers"
    ),
    "python -m transports.netns up --faults loss=0.1": Kind(
        ROOT_ONLY, "creates network namespaces and holds them until Ctrl-C"
    ),
    "python -m transports.netns up --faults partition=2s,partition_at=1s,partition_dir=replies": (
        Kind(ROOT_ONLY, "creates network namespaces and holds them until Ctrl-C")
    ),
    "ip netns exec rtfault-...-b python -m services serve bank --transport udp "
    "--host 10.213.0.2": Kind(ROOT_ONLY, "needs the namespaces `netns up` printed"),
    "ip netns exec rtfault-...-a python -m services client atm --transport udp "
    "--host 10.213.0.2": Kind(ROOT_ONLY, "needs the namespaces `netns up` printed"),
    "python -m experiments.compare results/kernel/retries_inprocess.json "
    "results/kernel/retries_kernel.json --labels in-process,kernel": Kind(RUN, expect="->"),
}

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_COMMENT = re.compile(r"\s{2,}#.*$")


@dataclass(frozen=True)
class Block:
    doc: str
    commands: tuple[str, ...]


def blocks() -> list[Block]:
    """The fenced ``sh`` blocks of the docs, as commands (continuations joined, comments cut)."""
    found = []
    for doc in DOCS:
        for match in _FENCE.finditer(doc.read_text()):
            if match.group(1) != "sh":
                continue
            commands, pending = [], ""
            for line in match.group(2).splitlines():
                line = pending + line.strip()
                if line.endswith("\\"):
                    pending = line[:-1].rstrip() + " "
                    continue
                pending = ""
                if line and not line.startswith("#"):
                    commands.append(_COMMENT.sub("", line))
            found.append(Block(str(doc.relative_to(ROOT)), tuple(commands)))
    return found


def test_every_doc_command_is_classified_and_every_entry_quoted() -> None:
    quoted = {command for block in blocks() for command in block.commands}
    assert sorted(quoted - COMMANDS.keys()) == [], "classify these in COMMANDS"
    assert sorted(COMMANDS.keys() - quoted) == [], "no doc quotes these any more"
    for kind in COMMANDS.values():
        assert kind.kind in (RUN, SERVE) or kind.why, kind


def test_no_command_hides_in_an_unlabelled_block() -> None:
    for doc in DOCS:
        for match in _FENCE.finditer(doc.read_text()):
            if match.group(1) == "":
                lines = match.group(2).splitlines()
                assert not any(line.startswith(("python", "printf", ".venv")) for line in lines), (
                    f"{doc.name}: label this block sh (a command) or text: {lines[0]}"
                )


# -- running a block -----------------------------------------------------------------

_PYTHON = re.compile(r"(?<![\w/.-])python(?=\s)")
_PORT_OPTION = re.compile(r"--port (\d+)")
_LISTEN = re.compile(r"--listen ([\d.]+):(\d+)")
_UPSTREAM = re.compile(r"--upstream ([\d.]+):(\d+)")
_LISTENING = re.compile(r"\[(?:PROXY )?LISTENING\] .*?(?:://)?[\d.]+:(\d+)")
DEFAULT_PORT = 5050  # python -m services without --port


def as_run(command: str, ports: dict[int, int], *, serving: bool) -> str:
    """``command`` with this interpreter for ``python`` and documented ports mapped.

    A server (``serving``) listens on port 0; another command's documented
    port becomes the port of the server that the block started for it.
    """
    command = _PYTHON.sub(shlex.quote(sys.executable), command)

    def mapped(port: str) -> str:
        assert int(port) in ports, f"no server of the block listens on {port}: {command}"
        return str(ports[int(port)])

    if "transports.proxy" in command:
        command = _UPSTREAM.sub(lambda m: f"--upstream {m[1]}:{mapped(m[2])}", command)
        return _LISTEN.sub(lambda m: f"--listen {m[1]}:0", command)
    if "-m services" not in command:
        return command
    if "--port" not in command:
        command += f" --port {DEFAULT_PORT}"
    if serving:
        return _PORT_OPTION.sub("--port 0", command)
    return _PORT_OPTION.sub(lambda m: f"--port {mapped(m[1])}", command)


def documented_port(command: str) -> int:
    listen = _LISTEN.search(command)
    if listen:
        return int(listen[2])
    port = _PORT_OPTION.search(command)
    return int(port[1]) if port else DEFAULT_PORT


@contextmanager
def serving(command: str, cwd: Path) -> Iterator[int]:
    """Start a server command; yield its port; stop it as Ctrl-C would, then check it."""
    proc = subprocess.Popen(
        shlex.split(command), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = _read_line(proc, TIMEOUT)
        listening = _LISTENING.search(line)
        assert listening, f"no listening line from {command!r}: {line!r}"
        yield int(listening[1])
    finally:
        proc.send_signal(signal.SIGINT)  # by pid: only the process started here
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, f"{command!r} exited {proc.returncode}: {err}"
    assert "Traceback" not in out + err, err


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line on stdout, waiting at most ``timeout`` s for it."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=deadline - time.monotonic()):
                return proc.stdout.readline()
    return ""


def run_to_end(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a shell command line (pipes as written) in its own process group."""
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this test started
        out, err = proc.communicate()
        pytest.fail(f"{command!r} did not end in {TIMEOUT} s: {err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def runnable_blocks() -> list[Block]:
    return [
        block
        for block in blocks()
        if any(COMMANDS.get(c, Kind(LONG)).kind in (RUN, SERVE) for c in block.commands)
    ]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # A copy of the committed results: commands read them and may write beside them.
    shutil.copytree(ROOT / "results", tmp_path / "results")
    return tmp_path


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda b: f"{b.doc}:{b.commands[0][:40]}")
def test_the_commands_of_a_doc_block_work_as_written(block: Block, workdir: Path) -> None:
    ports: dict[int, int] = {}
    with ExitStack() as servers:
        for command in block.commands:
            kind = COMMANDS[command]
            if kind.kind == SERVE:
                port = servers.enter_context(serving(as_run(command, ports, serving=True), workdir))
                ports[documented_port(command)] = port
            elif kind.kind == RUN:
                done = run_to_end(as_run(command, ports, serving=False), workdir)
                assert done.returncode == 0, f"{command!r}: {done.stderr}"
                assert "Traceback" not in done.stdout + done.stderr, done.stderr
                assert kind.expect in done.stdout + done.stderr, done.stdout
