"""What the interactive clients tell the user: each operation applied, not
applied, or of unknown outcome (with distinct exit statuses), Ctrl-C, and
hostile input that must never end in a traceback."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from services.programs.clients import EXIT_INTERRUPTED, EXIT_UNKNOWN, EXIT_UNREACHABLE
from tests.integration.servers import serve_process

#: Each test starts server or client processes: seconds per test.
pytestmark = pytest.mark.slow

LOGIN_AND_DEPOSIT_7 = "1\n1234\n2\n7\n4\n"


def client(*args: str, stdin: str | bytes) -> subprocess.CompletedProcess[str]:
    data = stdin if isinstance(stdin, bytes) else stdin.encode()
    done = subprocess.run(
        [sys.executable, "-m", "services", "client", *args],
        input=data,
        capture_output=True,
        timeout=60,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode()
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


@contextmanager
def silent_server(transport: str) -> Iterator[int]:
    """A loopback server that reads every request and never replies; yields its port."""
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def swallow() -> None:
        sock.settimeout(0.1)
        if transport == "tcp":
            sock.listen()
        while not stop.is_set():
            readable = [sock, *held]
            ready, _, _ = select.select(readable, [], [], 0.1)
            for s in ready:
                if s is sock and transport == "tcp":
                    held.append(sock.accept()[0])
                elif s.recv(65536) == b"" and s in held:
                    held.remove(s)
                    s.close()

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        sock.close()


@contextmanager
def replies_lost_after(upstream: int, marker: bytes) -> Iterator[int]:
    """A UDP relay to ``upstream`` that drops every reply once a request containing
    ``marker`` went through; yields its port."""
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.connect(("127.0.0.1", upstream))
    stop = threading.Event()

    def relay() -> None:
        peer = None
        dropping = False
        while not stop.is_set():
            ready, _, _ = select.select([front, back], [], [], 0.1)
            if front in ready:
                data, peer = front.recvfrom(65536)
                dropping = dropping or marker in data
                back.send(data)
            if back in ready:
                data = back.recv(65536)
                if not dropping and peer is not None:
                    front.sendto(data, peer)

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        yield front.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        front.close()
        back.close()


def closed_tcp_port() -> Iterator[int]:
    """A loopback port with nothing listening (bound, not listening: connect is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# 1. Every operation ends applied, not applied, or unknown.


def test_refused_connection_is_unreachable_nothing_sent() -> None:
    for port in closed_tcp_port():
        done = client("atm", "--port", str(port), "--attempts", "2", stdin=LOGIN_AND_DEPOSIT_7)
    assert done.returncode == EXIT_UNREACHABLE
    assert done.stderr.startswith("error: server unreachable, nothing was sent")
    no_traceback(done)


def test_server_that_never_replies_is_outcome_unknown(transport: str) -> None:
    with silent_server(transport) as port:
        done = client(
            "text",
            "--transport",
            transport,
            "--port",
            str(port),
            "--timeout",
            "0.2",
            "--attempts",
            "2",
            stdin="hello\n",
        )
    assert done.returncode == EXIT_UNKNOWN
    assert "No reply after 2 attempt(s)" in done.stdout
    assert "trying again is safe" in done.stdout
    assert done.stderr.startswith("error: outcome unknown: no reply after 2 attempt(s)")
    no_traceback(done)


def test_deposit_whose_reply_is_lost_is_unknown_yet_applied(tmp_path: Path) -> None:
    db = str(tmp_path / "bank.sqlite3")
    common = ("--transport", "udp", "--timeout", "0.3", "--attempts", "2")
    args = ("bank", "--transport", "udp", "--db", db, "--semantics", "exactly-once")
    with serve_process(*args) as served:
        with replies_lost_after(served.port, b"bank.deposit") as port:
            lost = client("atm", *common, "--port", str(port), stdin=LOGIN_AND_DEPOSIT_7)
        check = client("atm", *common, "--port", str(served.port), stdin="1\n1234\n1\n4\n")
    assert lost.returncode == EXIT_UNKNOWN, lost.stderr
    assert "Welcome Dibbyo Roy!" in lost.stdout
    assert "The deposit may or may not have been applied" in lost.stdout
    assert "Check your balance" in lost.stdout
    assert "exactly-once or at-most-once" in lost.stdout
    assert lost.stderr.startswith("error: outcome unknown")
    no_traceback(lost)
    # It was applied: the ledger has it.
    assert check.returncode == 0, check.stderr
    assert "Your balance is 10007" in check.stdout


def test_client_faults_losing_everything_give_outcome_unknown() -> None:
    with serve_process("bank", "--transport", "udp") as served:
        done = client(
            "atm",
            *("--transport", "udp", "--port", str(served.port), "--faults", "loss=1"),
            *("--timeout", "0.2", "--attempts", "2"),
            stdin=LOGIN_AND_DEPOSIT_7,
        )
    assert done.returncode == EXIT_UNKNOWN
    assert done.stderr.startswith("error: outcome unknown")
    no_traceback(done)


def test_a_definite_error_is_not_applied_and_the_session_goes_on(tmp_path: Path) -> None:
    db = str(tmp_path / "bank.sqlite3")
    with serve_process("bank", "--db", db) as served:
        done = client("atm", "--port", str(served.port), stdin="1\n1234\n3\n999999\n1\n4\n")
    assert done.returncode == 0, done.stderr
    assert "Transaction failed" in done.stdout
    assert "Nothing was applied" in done.stdout
    assert "Your balance is 10000" in done.stdout


def test_client_help_documents_the_exit_statuses() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services", "client", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for line in ("3    server unreachable", "4    outcome unknown", "130  interrupted"):
        assert line in done.stdout


# 2. Ctrl-C at a prompt quits at once.


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 20) -> bytes:
    assert proc.stdout is not None
    seen = b""
    fd = proc.stdout.fileno()
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no {marker!r} in {seen!r}"
        chunk = os.read(fd, 65536)
        assert chunk, f"end of output before {marker!r}: {seen!r}"
        seen += chunk
    return seen


@pytest.mark.parametrize(
    ("typed", "prompt"),
    [("", b"Enter ID: "), ("1\n", b"Enter Password: "), ("1\n1234\n", b"Enter choice: ")],
)
def test_ctrl_c_at_a_prompt_quits_at_once(typed: str, prompt: bytes, tmp_path: Path) -> None:
    with serve_process("bank", "--db", str(tmp_path / "b.sqlite3")) as served:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services", "client", "atm", "--port", str(served.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(typed.encode())
        proc.stdin.flush()
        read_until(proc, prompt)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_INTERRUPTED
    assert err.decode().strip() == "interrupted"
    assert b"Goodbye" not in out  # nothing (not even the logout) ran afterwards


# 3. No traceback for any input.


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a" * 20_000, "[Error] message has 20000 characters; the maximum is 4000"),
        (b"\xff\xfe bad", "[Error] input is not valid UTF-8"),
    ],
)
def test_text_client_refuses_bad_lines_and_goes_on(
    transport: str, line: str | bytes, expected: str
) -> None:
    data = (line if isinstance(line, bytes) else line.encode()) + b"\nok\n"
    with serve_process("text", "--transport", transport) as served:
        done = client("text", "--transport", transport, "--port", str(served.port), stdin=data)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "[Lower Case] ok [Upper Case] OK" in done.stdout
    no_traceback(done)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1" * 20_000, "[Error] number has 20000 digits; the maximum is 400"),
        ("x" * 20_000, "[Error] not sent: message of"),
        (b"\xff\xfe 12", "[Error] input is not valid UTF-8"),
    ],
)
def test_numbers_client_refuses_bad_lines_and_goes_on(line: str | bytes, expected: str) -> None:
    data = (line if isinstance(line, bytes) else line.encode()) + b"\n7\n"
    with serve_process("numbers") as served:
        done = client("numbers", "--port", str(served.port), stdin=data)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "[Prime] True [Palindrome] True" in done.stdout
    no_traceback(done)


LOGIN_AND_CHECK = "1\n1234\n1\n4\n"
CHECK = "1\n4\n"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("9" * 5000 + "\n1234\n" + LOGIN_AND_CHECK, "Invalid ID or Password"),  # 5,000-digit ID
        ("1\n" + "1" * 20_000 + "\n" + LOGIN_AND_CHECK, "Invalid ID or Password"),  # long PIN
        ("1\n1234\n2\n" + "5" * 5000 + "\n" + CHECK, "Invalid amount: the most is 1000000000"),
        ("1\n1234\n2\n\u00b2\n" + CHECK, "Invalid amount: enter a positive whole number"),
        ("1\n1234\n2\n0\n" + CHECK, "Invalid amount: enter a positive whole number"),
    ],
)
def test_atm_refuses_bad_input_and_goes_on(transport: str, typed: str, expected: str) -> None:
    with serve_process("bank", "--transport", transport) as served:
        done = client("atm", "--transport", transport, "--port", str(served.port), stdin=typed)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "Your balance is 10000" in done.stdout
    assert "Goodbye" in done.stdout
    no_traceback(done)


def test_atm_non_utf8_pin(transport: str) -> None:
    with serve_process("bank", "--transport", transport) as served:
        done = client(
            "atm",
            *("--transport", transport, "--port", str(served.port)),
            stdin=b"1\n\xff\xfe\n1\n1234\n4\n",
        )
    assert done.returncode == 0, done.stderr
    assert "not valid UTF-8" in done.stdout
    assert "Welcome Dibbyo Roy!" in done.stdout
    no_traceback(done)


def test_ctrl_c_while_waiting_for_a_reply_says_what_may_have_happened() -> None:
    with silent_server("tcp") as port:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services", "client", "atm", "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None
        proc.stdin.write(b"1\n1234\n")
        proc.stdin.flush()
        read_until(proc, b"Enter Password: ")
        time.sleep(0.5)  # the login request is out, its reply never comes
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == EXIT_INTERRUPTED
    assert "No reply yet. Logging in changes no balance" in err.decode()
    assert err.decode().rstrip().endswith("interrupted")
    assert "Traceback" not in err.decode()


def test_pin_is_not_echoed_at_a_terminal(tmp_path: Path) -> None:
    main, child = os.openpty()
    with serve_process("bank", "--db", str(tmp_path / "b.sqlite3")) as served:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services", "client", "atm", "--port", str(served.port)],
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
        )
        os.close(child)
        seen = b""

        def until(marker: bytes) -> None:
            nonlocal seen
            while marker not in seen:
                ready, _, _ = select.select([main], [], [], 20)
                assert ready, f"no {marker!r} in {seen!r}"
                seen += os.read(main, 65536)

        until(b"Enter ID: ")
        os.write(main, b"1\n")
        until(b"Enter Password: ")
        os.write(main, b"1234\n")
        until(b"Enter choice: ")
        os.write(main, b"4\n")
        until(b"Goodbye")
        proc.wait(timeout=10)
        os.close(main)
    assert proc.returncode == 0
    assert b"Welcome Dibbyo Roy!" in seen
    assert b"1234" not in seen  # the ID was echoed, the PIN was not
