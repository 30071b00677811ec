"""The kernel fault backend: real namespaces, real nftables drops, real clean-up.

Tests that need the kernel skip with the reason ``transports.netns.support()``
found (not Linux, not root, no ``ip``/``nft``, namespaces refused, no netem).
The command-construction tests at the bottom run everywhere.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from experiments.runner import Cell
from transports.faults import Cut, FaultSpec, Partition
from transports.netns import (
    CommandResult,
    KernelSupport,
    NetnsPair,
    UnsupportedFault,
    cleanup_stale,
    inside,
    netem_args,
    run_command,
    support,
)
from transports.retry import RetryPolicy
from transports.semantics import Semantics

#: Real servers waiting out retries, restarts or kernel timers: seconds per test.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel() -> KernelSupport:
    found = support()
    reason = found.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return found


def namespaces() -> set[str]:
    listed = run_command(["ip", "netns", "list"])
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


@pytest.fixture
def pair(kernel: KernelSupport) -> Iterator[NetnsPair]:
    with NetnsPair() as made:
        yield made


def udp_round_trips(pair: NetnsPair, count: int, timeout: float = 0.05) -> int:
    """Echo ``count`` datagrams from namespace a to b; how many came back."""
    with inside(pair.b.netns):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((pair.b.address, 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(100)
            except TimeoutError:
                continue
            server.sendto(data, addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with inside(pair.a.netns):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(timeout)
    answered = 0
    try:
        for n in range(count):
            client.sendto(str(n).encode(), (pair.b.address, server.getsockname()[1]))
            with contextlib.suppress(TimeoutError):
                answered += client.recv(100) == str(n).encode()
    finally:
        stop.set()
        thread.join(2)
        client.close()
        server.close()
    return answered


def test_pair_is_created_and_removed(kernel: KernelSupport) -> None:
    with NetnsPair() as pair:
        assert {pair.a.netns, pair.b.netns} <= namespaces()
        assert udp_round_trips(pair, 5) == 5
    assert not {pair.a.netns, pair.b.netns} & namespaces()


def test_pair_is_removed_after_an_error(kernel: KernelSupport) -> None:
    with pytest.raises(RuntimeError, match="boom"), NetnsPair() as pair:
        raise RuntimeError("boom")
    assert not {pair.a.netns, pair.b.netns} & namespaces()


@pytest.mark.parametrize("tool", ["nft", "iptables"])
def test_kernel_drops_packets_both_ways(kernel: KernelSupport, tool: str) -> None:
    if not getattr(kernel, f"{tool}_loss"):
        pytest.skip(f"{tool} random drop does not work here")
    with NetnsPair() as pair:
        pair.set_loss(0.3, tool=tool)
        answered = udp_round_trips(pair, 100, timeout=0.01)
        counts = pair.counters()
    # 0.7 * 0.7 = 49 % of round trips survive; 4 sigma of a binomial(100, 0.49) is 20.
    assert 29 <= answered <= 69
    assert counts["a->b"]["packets"] == 100
    assert 12 <= counts["a->b"]["dropped"] <= 48
    assert counts["b->a"]["packets"] == 100 - counts["a->b"]["dropped"]
    assert counts["b->a"]["packets"] - counts["b->a"]["dropped"] == answered


def test_full_loss_and_no_loss(pair: NetnsPair) -> None:
    pair.set_loss(0.0)
    assert udp_round_trips(pair, 20) == 20
    pair.clear_faults()
    pair.set_loss(1.0)
    assert udp_round_trips(pair, 5, timeout=0.02) == 0


def test_tcp_reset_rule_refuses_connections(pair: NetnsPair) -> None:
    with inside(pair.b.netns):
        listener = socket.create_server((pair.b.address, 0))
    pair.set_reset(1.0)
    with inside(pair.a.netns), pytest.raises(ConnectionRefusedError):
        socket.create_connection((pair.b.address, listener.getsockname()[1]), timeout=2)
    listener.close()
    assert pair.counters()["a->b"]["reset"] >= 1


def _until_applied(pair: NetnsPair, events: int) -> None:
    """Wait (bounded) until the partition timer has carried out ``events`` events."""
    timer = pair.partition_timer
    assert timer is not None
    deadline = time.monotonic() + 10
    while len(timer.applied) < events and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(timer.applied) >= events


@pytest.mark.parametrize("cut", [Cut.REQUESTS, Cut.REPLIES])
def test_partition_cuts_one_direction_until_stopped(pair: NetnsPair, cut: Cut) -> None:
    with inside(pair.b.netns):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with inside(pair.a.netns):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        server.bind((pair.b.address, 0))
        server.settimeout(0.3)
        client.settimeout(0.3)
        pair.start_partition(Partition(60.0, cut=cut))
        _until_applied(pair, 1)
        client.sendto(b"request", server.getsockname())
        if cut is Cut.REQUESTS:
            with pytest.raises(TimeoutError):
                server.recvfrom(100)
        else:
            _, peer = server.recvfrom(100)  # requests pass
            server.sendto(b"reply", peer)
            with pytest.raises(TimeoutError):
                client.recv(100)  # replies do not
        pair.stop_partition()
    assert udp_round_trips(pair, 5, timeout=2.0) == 5  # healed


def test_kernel_tcp_retransmits_through_the_partition(pair: NetnsPair) -> None:
    """Sent during the cut, a segment arrives by the kernel's retransmission after the heal."""
    with inside(pair.b.netns):
        listener = socket.create_server((pair.b.address, 0))
    with inside(pair.a.netns):
        client = socket.create_connection((pair.b.address, listener.getsockname()[1]), timeout=5)
    conn, _ = listener.accept()
    with listener, client, conn:
        origin = time.monotonic()
        pair.start_partition(Partition(2.0, cut=Cut.BOTH), origin=origin)
        _until_applied(pair, 1)
        client.sendall(b"deposit 25")
        conn.settimeout(20)
        assert conn.recv(100) == b"deposit 25"
        assert time.monotonic() >= origin + 2.0  # not before the heal


def test_partition_for_chosen_clients_is_refused(pair: NetnsPair) -> None:
    with pytest.raises(UnsupportedFault, match="partition_clients"):
        pair.apply(FaultSpec.parse("partition=1s,partition_clients=1"))


def test_tbf_limits_the_rate(kernel: KernelSupport) -> None:
    if (reason := kernel.skip_reason(tbf=True)) is not None:
        pytest.skip(reason)

    def transfer_seconds(pair: NetnsPair, size: int) -> float:
        with inside(pair.b.netns):
            listener = socket.create_server((pair.b.address, 0))
        received = []

        def sink() -> None:
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(65536):
                    received.append(len(data))

        thread = threading.Thread(target=sink, daemon=True)
        thread.start()
        started = time.perf_counter()
        with inside(pair.a.netns):
            sock = socket.create_connection((pair.b.address, listener.getsockname()[1]), 5)
        with sock:
            sock.sendall(b"x" * size)
        thread.join(10)
        listener.close()
        assert sum(received) == size
        return time.perf_counter() - started

    with NetnsPair() as pair:
        pair.set_rate("2mbit")
        limited = transfer_seconds(pair, 150_000)  # 1.2 Mbit at 2 Mbit/s, after the burst
    assert limited >= 0.3


def test_netem_delay_where_the_kernel_has_it(kernel: KernelSupport) -> None:
    if (reason := kernel.skip_reason(netem=True)) is not None:
        pytest.skip(reason)
    with NetnsPair() as pair:
        pair.apply(FaultSpec(delay=0.02))
        started = time.perf_counter()
        assert udp_round_trips(pair, 3, timeout=1.0) == 3
    assert time.perf_counter() - started >= 3 * 0.04


def test_unsupported_faults_without_netem(pair: NetnsPair, kernel: KernelSupport) -> None:
    if kernel.netem:
        pytest.skip("this kernel has netem: delay is supported")
    with pytest.raises(UnsupportedFault, match="netem"):
        pair.apply(FaultSpec(delay=0.01))


SCRIPT = textwrap.dedent(
    """
    import sys, time
    from transports.netns import NetnsPair
    with NetnsPair() as pair:
        pair.set_loss(0.5)
        print(pair.a.netns, pair.b.netns, flush=True)
        time.sleep(30)
    """
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_cleanup_on_interrupt(kernel: KernelSupport, how: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    names = set(proc.stdout.readline().split())
    assert len(names) == 2 and names <= namespaces()
    proc.send_signal(how)
    proc.communicate(timeout=10)
    if how is signal.SIGKILL:
        # Killed outright nothing can run; the next pair (or `cleanup`) sweeps it.
        assert names <= namespaces()
        assert set(cleanup_stale()) >= names
    assert not names & namespaces()


def test_retries_cell_with_kernel_loss(kernel: KernelSupport) -> None:
    from experiments.kernel import kernel_record, run_kernel_cell

    for transport in ("udp", "tcp"):
        cell = Cell(
            transport=transport,
            semantics=Semantics.EXACTLY_ONCE,
            faults=FaultSpec(loss=0.2),
            policy=RetryPolicy.from_name("fixed", timeout=0.3),
            max_attempts=4,  # bounds a call at 1.2 s, whatever TCP's backoff does
            ops=8,
            clients=2,
            seed=3,
        )
        rec = kernel_record(run_kernel_cell(cell))
        assert rec["backend"] == "kernel"
        # Exactly-once holds on a real lossy link; an unknown outcome may or may not
        # have been applied, so money drift is only zero when nothing is unknown.
        assert rec["duplicated"] == 0 and rec["lost"] == 0
        assert rec["ok"] + rec["unknown"] == 8
        assert rec["unknown"] or rec["money_drift"] == 0
        packets = rec["kernel_packets"]
        assert packets["a->b"]["packets"] >= 8 and packets["b->a"]["packets"] > 0, packets


# --- everywhere: command construction and skip reasons ------------------------------------


class Recorder:
    """A fake runner: records commands, answers success."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        self.calls.append((list(argv), stdin))
        return CommandResult(tuple(argv), 0, "", "")


def test_commands_for_loss_rate_and_cleanup() -> None:
    recorder = Recorder()
    pair = NetnsPair(runner=recorder)
    pair.create()
    pair.set_loss(0.25, tool="nft")
    pair.set_rate("10mbit")
    pair.close()
    argvs = [" ".join(argv) for argv, _ in recorder.calls]
    assert f"ip netns add {pair.a.netns}" in argvs
    assert any(a.startswith(f"ip link add rtf-a netns {pair.a.netns} type veth") for a in argvs)
    scripts = [stdin for _, stdin in recorder.calls if stdin]
    assert len(scripts) == 2
    assert "iifname rtf-b numgen random mod 1000000 < 250000 counter drop" in scripts[1]
    assert f"tc -n {pair.b.netns} qdisc add dev rtf-b root tbf rate 10mbit" in " | ".join(argvs)
    assert argvs[-2:] == [f"ip netns del {pair.b.netns}", f"ip netns del {pair.a.netns}"]


def test_netem_arguments() -> None:
    assert netem_args(FaultSpec(delay=0.02, jitter=0.005, dup=0.1, corrupt=0.01)) == [
        "netem", "delay", "20.000ms", "5.000ms", "duplicate", "10.0000%", "corrupt", "1.0000%",
    ]  # fmt: skip
    # Ours holds 10 % back by gap; netem sends 90 % early and delays the rest.
    assert netem_args(FaultSpec(reorder=0.1, reorder_gap=0.005)) == [
        "netem", "delay", "5.000ms", "reorder", "90.0000%",
    ]  # fmt: skip
    with pytest.raises(UnsupportedFault):
        netem_args(FaultSpec(reorder=0.1, delay=0.01))


def test_refusals() -> None:
    pair = NetnsPair(runner=Recorder())
    with pytest.raises(UnsupportedFault, match="crash"):
        pair.apply(FaultSpec(crash=0.1))
    with pytest.raises(UnsupportedFault, match="rate"):
        pair.set_rate("fast")


def test_skip_reasons_name_the_missing_piece() -> None:
    tools: dict[str, str | None] = {"ip": "/sbin/ip", "tc": "/sbin/tc", "nft": None}
    assert "Linux" in (KernelSupport(False, True, tools).skip_reason() or "")
    assert "root" in (KernelSupport(True, False, tools).skip_reason() or "")
    no_ip = KernelSupport(True, True, {**tools, "ip": None}).skip_reason() or ""
    assert "iproute2" in no_ip
    refused = KernelSupport(True, True, tools, notes=("ip netns add: Operation not permitted",))
    assert "Operation not permitted" in (refused.skip_reason() or "")
    no_drop = KernelSupport(True, True, tools, netns=True)
    assert "nftables" in (no_drop.skip_reason() or "")
    usable = KernelSupport(True, True, tools, netns=True, nft_loss=True)
    assert usable.skip_reason() is None
    assert "netem" in (usable.skip_reason(netem=True) or "")


def test_servers_under_kernel_loss_via_netns_up(kernel: KernelSupport, tmp_path: Path) -> None:
    # `python -m transports.netns up` holds a lossy pair; the unmodified server
    # runs in b and our ATM client in a, each through `ip netns exec`.
    up = subprocess.Popen(
        [sys.executable, "-m", "transports.netns", "up", "--faults", "loss=0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert up.stdout is not None
    match = re.search(r"a=(\S+) \(([\d.]+)\), server b=(\S+) \(([\d.]+)\)", up.stdout.readline())
    assert match, up.stderr.read() if up.stderr else ""
    ns_a, _, ns_b, address_b = match.groups()
    serve = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, sys.executable, "-m", "services", "serve", "bank",
         "--transport", "udp", "--host", address_b, "--port", "0",
         "--db", str(tmp_path / "bank.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        port = re.search(r":(\d+) \(", serve.stdout.readline())
        assert port, serve.stderr.read() if serve.stderr else ""
        done = subprocess.run(
            ["ip", "netns", "exec", ns_a, sys.executable, "-m", "services", "client", "atm",
             "--transport", "udp", "--host", address_b, "--port", port.group(1),
             "--timeout", "0.2", "--attempts", "10"],
            input="1\n1234\n2\n2\n1\n4\n", capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=10)
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=10)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Your balance is 10002") == 2
    assert up.returncode == 0 and "[NETNS DOWN]" in out
    assert {ns_a, ns_b}.isdisjoint(namespaces())


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_serve_with_the_kernel_fault_backend(
    kernel: KernelSupport, tmp_path: Path, transport: str
) -> None:
    # `serve --fault-backend kernel` makes its own pair, serves in b and says
    # where clients go; the pair is gone once the server stops.
    serve = subprocess.Popen(
        [sys.executable, "-m", "services", "serve", "bank", "--transport", transport,
         "--fault-backend", "kernel", "--faults", "loss=0.1", "--port", "0",
         "--db", str(tmp_path / "bank.sqlite3")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert serve.stdout is not None
        where = re.search(r"ip netns exec (\S+) .* --host ([\d.]+)", serve.stdout.readline())
        port = re.search(r":(\d+) \(", serve.stdout.readline())
        assert where and port, serve.stderr.read() if serve.stderr else ""
        ns_a, address_b = where.groups()
        done = subprocess.run(
            ["ip", "netns", "exec", ns_a, sys.executable, "-m", "services", "client", "atm",
             "--transport", transport, "--host", address_b, "--port", port.group(1),
             "--timeout", "2", "--attempts", "10"],
            input="1\n1234\n2\n2\n1\n4\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=15)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Your balance is 10002") == 2
    assert serve.returncode == 0 and "[STOPPED]" in out, err
    assert ns_a not in namespaces()
