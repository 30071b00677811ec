"""The command line end to end: real server processes, piped clients, and the
lab's own unmodified Problem A client against ``--framing seed``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.servers import serve_process

#: Every test starts server and client processes: ~9 s for the module.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SEED_CLIENT = HERE / "seed_clients" / "problem_a_client.py"
RUN_SEED_CLIENT = HERE / "seed_clients" / "run_seed_client.py"


@contextmanager
def server(*args: str) -> Iterator[int]:
    """Start ``python -m services serve ARGS --port 0``; yield its port."""
    with serve_process(*args) as served:
        yield served.port


def run(args: list[str], stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )


def client(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "services", "client", *args], stdin)


def test_atm_piped_session_shows_10002(transport: str, tmp_path: Path) -> None:
    db = str(tmp_path / "bank.sqlite3")
    with server("bank", "--transport", transport, "--db", db) as port:
        done = client(
            "atm", "--transport", transport, "--port", str(port), stdin="1\n1234\n2\n2\n1\n4\n"
        )
    assert done.returncode == 0, done.stderr
    assert "Welcome Dibbyo Roy!" in done.stdout
    assert "1. Check Balance\n2. Deposit\n3. Withdraw\n4. Exit" in done.stdout
    assert done.stdout.count("Your balance is 10002") == 2
    assert "Success rate: 1.00" in done.stdout
    assert "Error rate: 0.00" in done.stdout


@pytest.mark.parametrize("workers", ["1", "2"])
def test_atm_on_uvloop(transport: str, workers: str, tmp_path: Path) -> None:
    pytest.importorskip("uvloop")  # in the test extra; absent only off Linux/macOS
    db = str(tmp_path / "bank.sqlite3")
    args = ("bank", "--transport", transport, "--db", db, "--loop", "uvloop")
    with serve_process(*args, "--workers", workers, "--semantics", "exactly-once") as served:
        assert "loop uvloop" in served.banner
        done = client(
            "atm",
            "--transport",
            transport,
            "--port",
            str(served.port),
            stdin="1\n1234\n2\n2\n1\n4\n",
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Your balance is 10002") == 2


def test_atm_wrong_pin_then_right(transport: str, tmp_path: Path) -> None:
    with server("bank", "--transport", transport, "--db", str(tmp_path / "b.sqlite3")) as port:
        done = client(
            "atm",
            "--transport",
            transport,
            "--port",
            str(port),
            stdin="1\n0000\n3\n1234\n3\n50\n4\n",
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Invalid ID or Password") == 1
    assert "Welcome Abir Hasan!" in done.stdout
    assert "Your balance is 9950" in done.stdout


def test_text_and_numbers_clients(transport: str) -> None:
    with server("text", "--transport", transport) as port:
        done = client("text", "--transport", transport, "--port", str(port), stdin="hello world\n")
    assert "[Lower Case] hello world [Upper Case] HELLO WORLD" in done.stdout
    with server("numbers", "--transport", transport) as port:
        done = client(
            "numbers", "--transport", transport, "--port", str(port), stdin="121\n23\nabc\n"
        )
    assert "[Prime] False [Palindrome] True" in done.stdout
    assert "[Prime] True [Palindrome] False" in done.stdout
    assert "[Error]" in done.stdout
    assert done.returncode == 0


def test_unmodified_lab_client_against_seed_framing() -> None:
    lines = ["hello world", "ashik and dibbyo", "!DISCONNECT"]
    with server("text", "--transport", "tcp", "--framing", "seed") as port:
        done = run([str(RUN_SEED_CLIENT), str(SEED_CLIENT), str(port)], "\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    assert "[Lower Case] hello world [Upper Case] HELLO WORLD" in done.stdout
    assert "[Lower Case] ashik and dibbyo [Upper Case] ASHIK AND DIBBYO" in done.stdout

    with server("numbers", "--transport", "tcp", "--framing", "seed") as port:
        done = run([str(RUN_SEED_CLIENT), str(SEED_CLIENT), str(port)], "121\n23\n!DISCONNECT\n")
    assert done.returncode == 0, done.stderr
    assert "[Prime] False [Palidrome] True" in done.stdout  # the lab's spelling
    assert "[Prime] True [Palidrome] False" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "bank", "--faults", "loss=2"],
        ["serve", "bank", "--faults", "bogus=1"],
        ["serve", "bank", "--port", "70000"],
        ["serve", "text", "--transport", "udp", "--framing", "seed"],
        ["serve", "numbers", "--prime-processes", "-1"],
        ["client", "atm", "--attempts", "0"],
    ],
)
def test_bad_options_exit_cleanly(args: list[str]) -> None:
    done = run(["-m", "services", *args], timeout=15)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr


def test_unreachable_server_is_a_clear_error(transport: str) -> None:
    # Port 9 (discard) on loopback has no listener in the test environment.
    # TCP: every connect is refused, nothing was sent (3). UDP: the datagrams
    # left and no reply came, so the outcome is unknown (4).
    done = client(
        "text",
        "--transport",
        transport,
        "--port",
        "9",
        "--timeout",
        "0.2",
        "--attempts",
        "2",
        stdin="hi\n",
    )
    if transport == "tcp":
        assert done.returncode == 3
        assert done.stderr.startswith("error: server unreachable, nothing was sent")
    else:
        assert done.returncode == 4
        assert done.stderr.startswith("error: outcome unknown: no reply")
    assert "Traceback" not in done.stderr
    assert os.environ.get("PYTHONWARNINGS") != "error" or not done.stderr.count("Warning")
