"""The fault proxy end to end: real processes on loopback, unmodified clients.

The lab's Problem A client and our ATM client talk to real servers through
``python -m transports.proxy``; small in-test echo servers check resets and
seeded reproducibility. Every process is started here and stopped by its pid.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.integration.servers import LISTENING

#: Real servers waiting out retries, restarts or kernel timers: seconds per test.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SEED_CLIENT = HERE / "seed_clients" / "problem_a_client.py"
RUN_SEED_CLIENT = HERE / "seed_clients" / "run_seed_client.py"
PROXY_LISTENING = re.compile(r"\[PROXY LISTENING\] \w+ \S+:(\d+) -> ")
PROXY = ["-m", "transports.proxy", "--listen", "127.0.0.1:0"]
ATM_CLIENT = ["-m", "services", "client", "atm", "--transport", "udp"]


@contextmanager
def process(argv: list[str], ready: re.Pattern[str], out: list[str]) -> Iterator[int]:
    """Start ``python ARGV``, yield the port its first line names; SIGTERM it after.

    The full stdout after the stop is appended to ``out`` (the exit summary).
    """
    proc = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = ready.search(line)
        assert match, f"did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        yield int(match.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
        out.append(rest)


def server(*args: str) -> AbstractContextManager[int]:
    return process(["-m", "services", "serve", *args, "--port", "0"], LISTENING, [])


def proxy(
    transport: str, upstream: int, *args: str, out: list[str] | None = None
) -> AbstractContextManager[int]:
    argv = [*PROXY, "--transport", transport, "--upstream", f"127.0.0.1:{upstream}", *args]
    return process(argv, PROXY_LISTENING, out if out is not None else [])


def counters(summary: str) -> dict[str, dict[str, int]]:
    """The per-direction table of a ``[PROXY STOPPED]`` summary, as numbers."""
    lines = summary[summary.index("[PROXY STOPPED]") :].splitlines()
    header = lines[1].split()[1:]
    table = {}
    for line in lines[3:5]:
        name, *values = line.split()
        table[name] = dict(zip(header, map(int, values), strict=True))
    return table


def run_lab_client(port: int, lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_SEED_CLIENT), str(SEED_CLIENT), str(port)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_lab_client_through_tcp_proxy_with_delay_and_slicing() -> None:
    out: list[str] = []
    lines = ["hello world", "ashik and dibbyo", "!DISCONNECT"]
    with (
        server("text", "--framing", "seed") as upstream,
        proxy(
            "tcp", upstream, "--faults", "delay=20ms,jitter=10ms", "--seed", "3",
            "--slice", "5", "--slice-delay", "0.001", "--slice-dir", "request", out=out,
        ) as port,
    ):  # fmt: skip
        done = run_lab_client(port, lines)
    assert done.returncode == 0, done.stderr
    assert "[Lower Case] hello world [Upper Case] HELLO WORLD" in done.stdout
    assert "[Lower Case] ashik and dibbyo [Upper Case] ASHIK AND DIBBYO" in done.stdout
    table = counters(out[0])
    request, reply = table["client->server"], table["server->client"]
    # The server reassembled the 64-byte headers from 1..5-byte writes.
    assert request["writes"] > request["messages"] >= 3
    assert request["delayed"] == request["messages"] and reply["delayed"] == reply["messages"]
    assert "connections 1" in out[0]


def test_reply_slicing_shows_the_lab_clients_single_recv_bug() -> None:
    # The lab client reads each answer with one recv(): TCP has no message
    # boundaries, so an answer split into small writes comes back in fragments.
    with (
        server("text", "--framing", "seed") as upstream,
        proxy(
            "tcp", upstream, "--slice", "4", "--slice-delay", "0.02", "--slice-dir", "reply"
        ) as port,
    ):
        done = run_lab_client(port, ["hello world", "!DISCONNECT"])
    first_answer = done.stdout.split("Enter message: ")[1].strip()
    assert 1 <= len(first_answer) <= 4
    assert "[Lower Case] hello world [Upper Case] HELLO WORLD" not in done.stdout


def test_atm_through_udp_proxy_with_loss_and_duplicates(tmp_path: Path) -> None:
    out: list[str] = []
    db = str(tmp_path / "bank.sqlite3")
    with (
        server("bank", "--transport", "udp", "--semantics", "exactly-once", "--db", db) as up,
        proxy("udp", up, "--faults", "loss=0.2,dup=0.4", "--seed", "2", out=out) as port,
    ):
        done = subprocess.run(
            [
                sys.executable,
                *ATM_CLIENT,
                "--port",
                str(port),
                "--timeout",
                "0.2",
                "--attempts",
                "10",
            ],
            input="1\n1234\n2\n2\n1\n4\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert "Welcome Dibbyo Roy!" in done.stdout
    # Duplicated deposits reached the server, yet it applied the deposit once.
    assert done.stdout.count("Your balance is 10002") == 2
    table = counters(out[0])
    # Seed 2 drops requests 2 and 3 and the first reply, and duplicates request 4.
    assert table["client->server"]["dropped"] >= 2
    assert table["client->server"]["duplicated"] >= 1
    assert table["server->client"]["dropped"] >= 1


class EchoServer:
    """A loopback echo server (TCP or UDP) in a thread; records TCP resets it saw."""

    def __init__(self, kind: int) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.resets = 0
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        target = self._tcp if kind == socket.SOCK_STREAM else self._udp
        if kind == socket.SOCK_STREAM:
            self.sock.listen()
        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def _udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            self.sock.sendto(data, addr)

    def _tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except ConnectionResetError:
                self.resets += 1
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def udp_echo() -> Iterator[EchoServer]:
    echo = EchoServer(socket.SOCK_DGRAM)
    yield echo
    echo.close()


@pytest.fixture
def tcp_echo() -> Iterator[EchoServer]:
    echo = EchoServer(socket.SOCK_STREAM)
    yield echo
    echo.close()


def test_tcp_reset_breaks_both_sides(tcp_echo: EchoServer) -> None:
    out: list[str] = []
    with proxy("tcp", tcp_echo.port, "--faults", "reset=1", out=out) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            time.sleep(0.2)  # let the proxy reach the upstream before the reset
            sock.sendall(b"deposit 25")
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        deadline = time.monotonic() + 5
        while tcp_echo.resets == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert tcp_echo.resets == 1  # the server's side was reset too, not closed cleanly
    table = counters(out[0])
    assert table["client->server"]["reset"] == 1
    assert table["client->server"]["forwarded"] == 0


def test_tcp_stall_holds_the_stream(tcp_echo: EchoServer) -> None:
    out: list[str] = []
    with (
        proxy("tcp", tcp_echo.port, "--stall", "1", "--stall-time", "0.1", out=out) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        started = time.perf_counter()
        for n in range(2):
            sock.sendall(b"ping %d" % n)
            assert sock.recv(100) == b"ping %d" % n
        elapsed = time.perf_counter() - started
    assert elapsed >= 4 * 0.1  # each message stalled once on the way in and once out
    table = counters(out[0])
    assert table["client->server"]["stalled"] == table["server->client"]["stalled"] == 2


def udp_session(port: int, count: int) -> list[bytes]:
    """A lockstep client: each datagram, then collect every answer for 15 ms."""
    received = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.015)
        for n in range(count):
            sock.sendto(f"message {n:03d}".encode(), ("127.0.0.1", port))
            deadline = time.monotonic() + 0.015
            while time.monotonic() < deadline:
                try:
                    received.append(sock.recv(100))
                except TimeoutError:
                    break
    return received


def test_same_seed_same_counters(udp_echo: EchoServer) -> None:
    faults = "loss=0.2,dup=0.2,reorder=0.1,gap=2ms,corrupt=0.1,delay=1ms"
    summaries = []
    for seed in ("11", "11", "12"):
        out: list[str] = []
        with proxy("udp", udp_echo.port, "--faults", faults, "--seed", seed, out=out) as port:
            udp_session(port, 40)
        summaries.append(counters(out[0]))
    assert summaries[0] == summaries[1]
    assert summaries[0] != summaries[2]
    request = summaries[0]["client->server"]
    assert request["messages"] == 40
    assert request["forwarded"] == 40 - request["dropped"] + request["duplicated"]


def test_udp_partition_cuts_the_chosen_client_only(udp_echo: EchoServer) -> None:
    """A 60 s reply-only partition for session 2: its requests pass, its replies die."""
    out: list[str] = []
    faults = "partition=60s,partition_dir=replies,partition_clients=2"  # sessions count from 1
    with proxy("udp", udp_echo.port, "--faults", faults, out=out) as port:
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # session 1
        cut = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # session 2
        with first, cut:
            first.settimeout(5)
            first.sendto(b"hello", ("127.0.0.1", port))
            assert first.recv(100) == b"hello"  # session 1 exists before session 2
            for n in range(3):
                cut.sendto(b"cut %d" % n, ("127.0.0.1", port))
            # The echo server answers in order: once session 1's next echo is back,
            # session 2's three echoes have reached the proxy before it.
            first.sendto(b"again", ("127.0.0.1", port))
            assert first.recv(100) == b"again"
    table = counters(out[0])
    assert table["client->server"]["forwarded"] == 5
    assert table["client->server"]["partitioned"] == 0
    assert table["server->client"]["partitioned"] == 3
    assert table["server->client"]["forwarded"] == 2


def test_tcp_length_framing_is_reproducible(tcp_echo: EchoServer) -> None:
    # With --framing length a message is one frame, whatever the reads: the
    # stream-mode decisions (loss -> reset under tcp=reset, delay, corruption)
    # repeat exactly.
    def session(port: int) -> int:
        resets = 0
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        for n in range(30):
            body = f"frame {n}".encode()
            try:
                sock.sendall(struct.pack(">I", len(body)) + body)
                assert len(sock.recv(100)) == 4 + len(body)
            except ConnectionResetError:
                resets += 1
                sock.close()
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.close()
        return resets

    results = []
    for _ in range(2):
        out: list[str] = []
        faults = "loss=0.1,delay=1ms,jitter=1ms,corrupt=0.2,tcp=reset"
        args = ["--faults", faults, "--seed", "4"]
        with proxy("tcp", tcp_echo.port, *args, "--framing", "length", out=out) as port:
            resets = session(port)
        results.append((resets, counters(out[0])))
    assert results[0] == results[1]
    assert results[0][0] > 0  # some connections were reset, and reconnected


def test_summary_on_sigint_and_bounded_sessions(udp_echo: EchoServer) -> None:
    proc = subprocess.Popen(
        [sys.executable, *PROXY, "--transport", "udp", "--upstream", f"127.0.0.1:{udp_echo.port}",
         "--max-connections", "1", "--idle-timeout", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    match = PROXY_LISTENING.search(proc.stdout.readline())
    assert match
    port = int(match.group(1))
    for _ in range(2):  # two client addresses: the second evicts the first
        assert udp_session(port, 1) == [b"message 000"]
    time.sleep(0.8)  # idle sessions expire
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err
    assert "sessions 2, evicted 1, expired 1" in out
    assert counters(out)["server->client"]["forwarded"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--faults", "bogus=1"],
        ["--faults", "loss=2"],
        ["--stall", "1.5"],
    ],
)
def test_bad_options_exit_cleanly(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *PROXY, "--transport", "tcp", "--upstream", "127.0.0.1:9", *args],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
