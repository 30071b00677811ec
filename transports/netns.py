"""Real kernel faults between two network namespaces joined by a veth link.

Role: the ``kernel`` fault backend. ``NetnsPair`` creates two namespaces of our
own (``a``, the client side, and ``b``, the server side), joins them with a
veth pair and makes the kernel itself misbehave between them:

* packet loss: an nftables rule ``numgen random mod 1000000 < k drop`` where
  packets arrive in each namespace (iptables ``-m statistic --mode random`` when
  nft is missing). It drops *packets*, so TCP retransmits below the application;
* TCP resets: ``reject with tcp reset`` for a random fraction of arriving TCP
  packets (the sender's connection is aborted);
* rate limiting: ``tc qdisc ... tbf`` on both veth ends;
* delay, jitter, duplication, reordering, corruption, burst loss: ``tc netem``,
  only where the kernel has it (``probe()`` finds out at run time).

Every namespace, and with it every rule, qdisc and veth inside, is removed on
exit: also on an exception, on Ctrl-C (KeyboardInterrupt) and on SIGTERM (turned
into SystemExit while a pair is open). A process killed outright leaves its
namespaces behind; the next ``NetnsPair`` (or ``python -m transports.netns
cleanup``) removes those whose owner process is gone. Names carry the owner's pid.

``inside(name)`` moves the *calling thread* into a namespace (setns(2)); sockets
created there stay in it. An asyncio program can thus open its server socket in
``b`` and its client sockets in ``a`` within one process.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import functools
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType

from transports.faults import FaultSpec

__all__ = [
    "KernelSupport",
    "NetnsError",
    "NetnsPair",
    "UnsupportedFault",
    "cleanup_stale",
    "inside",
    "probe",
]

PREFIX = "rtfault"
TABLE = "rtfault"  # our nftables table (family inet) in each namespace
SCALE = 1_000_000  # numgen resolution: probabilities are applied to 1e-6
CLONE_NEWNET = 0x40000000
_RATE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$")
_counter = itertools.count(1)
_SIGTERM_TRAPS = [0]  # open pairs that rely on our SIGTERM handler


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


def _check(result: CommandResult) -> CommandResult:
    if result.returncode != 0:
        raise NetnsError(f"`{' '.join(result.argv)}` failed ({result.returncode}): {result.stderr}")
    return result


# --- entering a namespace (setns) -------------------------------------------


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the calling thread in network namespace ``name``; restore it afterwards."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


# --- what this machine allows ----------------------------------------------


@dataclass(frozen=True)
class KernelSupport:
    """What the kernel backend can do here, found by trying it (see ``probe``)."""

    linux: bool
    root: bool
    tools: dict[str, str | None]  # ip, tc, nft, iptables -> path or None
    netns: bool = False  # namespaces and a veth link between them
    nft_loss: bool = False
    iptables_loss: bool = False
    tbf: bool = False
    netem: bool = False
    notes: tuple[str, ...] = ()  # why each failed probe failed

    @property
    def loss_tool(self) -> str | None:
        return "nft" if self.nft_loss else "iptables" if self.iptables_loss else None

    def skip_reason(self, *, netem: bool = False, tbf: bool = False) -> str | None:
        """None when the backend (with the extras asked for) works here, else why not."""
        if not self.linux:
            return f"kernel faults need Linux network namespaces (this is {sys.platform})"
        if not self.root:
            return "kernel faults need root (CAP_NET_ADMIN) to create namespaces"
        missing = [t for t in ("ip", "tc") if not self.tools.get(t)]
        if missing:
            return f"kernel faults need {' and '.join(missing)} (apt-get install iproute2)"
        if not self.netns:
            return "cannot create network namespaces / veth here: " + "; ".join(self.notes)
        if self.loss_tool is None:
            return "no random-drop rule works (apt-get install nftables): " + "; ".join(self.notes)
        if netem and not self.netem:
            return "this kernel has no tc netem (CONFIG_NET_SCH_NETEM)"
        if tbf and not self.tbf:
            return "this kernel has no tc tbf (CONFIG_NET_SCH_TBF)"
        return None

    def describe(self) -> str:
        tools = ", ".join(f"{k}={'yes' if v else 'missing'}" for k, v in self.tools.items())
        flags = ", ".join(
            f"{k}={'yes' if getattr(self, k) else 'no'}"
            for k in ("netns", "nft_loss", "iptables_loss", "tbf", "netem")
        )
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        return f"linux={self.linux}, root={self.root}; {tools}; {flags}{notes}"


def probe(runner: Runner = run_command) -> KernelSupport:
    """Try each kernel feature in a scratch namespace pair, then remove it."""
    tools = {t: shutil.which(t) for t in ("ip", "tc", "nft", "iptables")}
    base = KernelSupport(sys.platform == "linux", os.geteuid() == 0, tools)
    if not (base.linux and base.root and tools["ip"]):
        return base
    notes: list[str] = []
    pair = NetnsPair(runner=runner)
    try:
        pair.create()
    except NetnsError as err:
        return KernelSupport(base.linux, base.root, tools, notes=(str(err),))
    found: dict[str, bool] = {}
    attempts: list[tuple[str, Callable[[], None]]] = [
        ("nft_loss", lambda: pair.set_loss(0.0001, tool="nft")),
        ("iptables_loss", lambda: pair.set_loss(0.0001, tool="iptables")),
        ("tbf", lambda: pair.set_rate("100mbit")),
        ("netem", lambda: pair.set_netem(FaultSpec(delay=0.001))),
    ]
    try:
        for name, attempt in attempts:
            try:
                if name.endswith("loss") and not tools[name.split("_")[0]]:
                    raise NetnsError(f"{name.split('_')[0]} is not installed")
                attempt()
                found[name] = True
            except NetnsError as err:
                found[name] = False
                notes.append(f"{name}: {err}")
            pair.clear_faults()
    finally:
        pair.close()
    return KernelSupport(
        base.linux,
        base.root,
        tools,
        netns=True,
        nft_loss=found["nft_loss"],
        iptables_loss=found["iptables_loss"],
        tbf=found["tbf"],
        netem=found["netem"],
        notes=tuple(notes),
    )


def default_loss_tool() -> str | None:
    """nft when installed, else iptables, else None."""
    return "nft" if shutil.which("nft") else "iptables" if shutil.which("iptables") else None


@functools.cache
def support() -> KernelSupport:
    """``probe()`` with the real commands, once per process."""
    return probe()


# --- the namespace pair -------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One end of the link: namespace name, veth device and IPv4 address."""

    netns: str
    device: str
    address: str


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale(runner: Runner = run_command, prefix: str = PREFIX) -> list[str]:
    """Delete namespaces named ``{prefix}-{pid}-...`` whose process no longer exists."""
    listed = runner(["ip", "netns", "list"], None)
    removed = []
    for line in listed.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{re.escape(prefix)}-(\d+)-\d+-[ab]", name)
        stale = match is not None and not _alive(int(match.group(1)))
        if stale and runner(["ip", "netns", "del", name], None).returncode == 0:
            removed.append(name)
    return removed


@dataclass
class NetnsPair:
    """Two namespaces joined by veth, with kernel faults between them. Use as a context.

    ``a`` (10.213.0.1) is the client side, ``b`` (10.213.0.2) the server side.
    Loss applies independently to each direction, per packet, where it arrives.
    """

    runner: Runner = run_command
    prefix: str = PREFIX
    a: Side = field(init=False)
    b: Side = field(init=False)
    loss_tool: str | None = field(default=None, init=False)
    _created: list[str] = field(default_factory=list, init=False)
    _trapped: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        stem = f"{self.prefix}-{os.getpid()}-{next(_counter)}"
        self.a = Side(f"{stem}-a", "rtf-a", "10.213.0.1")
        self.b = Side(f"{stem}-b", "rtf-b", "10.213.0.2")

    # lifecycle

    def __enter__(self) -> NetnsPair:
        self._trap_sigterm()
        try:
            self.create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        """Create both namespaces and the link; on any failure remove what was made."""
        cleanup_stale(self.runner, self.prefix)
        atexit.register(self.close)  # a backstop for exits that skip __exit__
        try:
            for side in (self.a, self.b):
                self._ip("netns", "add", side.netns)
                self._created.append(side.netns)
            # Created straight inside the namespaces: never visible in the host's.
            self._ip(
                "link", "add", self.a.device, "netns", self.a.netns, "type", "veth",
                "peer", "name", self.b.device, "netns", self.b.netns,
            )  # fmt: skip
            for side in (self.a, self.b):
                self._ip("-n", side.netns, "addr", "add", f"{side.address}/30", "dev", side.device)
                self._ip("-n", side.netns, "link", "set", side.device, "up")
                self._ip("-n", side.netns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Remove everything (idempotent). Deleting a namespace removes its rules and link."""
        while self._created:
            name = self._created.pop()
            self.runner(["ip", "netns", "del", name], None)
        atexit.unregister(self.close)
        self._restore_sigterm()

    def _trap_sigterm(self) -> None:
        # SIGTERM's default action kills without unwinding: turn it into SystemExit
        # so the finally blocks (and __exit__) run. Only the main thread may do this;
        # a handler someone else installed is left alone. Counted for nested pairs.
        if threading.current_thread() is not threading.main_thread():
            return
        if _SIGTERM_TRAPS[0] == 0 and signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        if _SIGTERM_TRAPS[0] == 0:
            signal.signal(signal.SIGTERM, _raise_exit)
        _SIGTERM_TRAPS[0] += 1
        self._trapped = True

    def _restore_sigterm(self) -> None:
        if self._trapped:
            self._trapped = False
            _SIGTERM_TRAPS[0] -= 1
            if _SIGTERM_TRAPS[0] == 0:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.a, self.b)

    def exec_argv(self, side: Side, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside ``side``'s namespace."""
        return ["ip", "netns", "exec", side.netns, *argv]

    # faults

    def apply(self, spec: FaultSpec, *, rate: str | None = None) -> None:
        """Install ``spec``'s link faults (and an optional rate limit) on both directions.

        ``app_fail`` is not a network fault and is left to the application;
        ``crash`` has no kernel equivalent and is refused.
        """
        if spec.crash:
            raise UnsupportedFault("crash is a server fault, not a network one")
        netem_keys = [
            key
            for key, value in (
                ("delay", spec.delay), ("jitter", spec.jitter), ("dup", spec.dup),
                ("reorder", spec.reorder), ("corrupt", spec.corrupt), ("ge_p", spec.ge_p),
            )
            if value
        ]  # fmt: skip
        if netem_keys:
            self.set_netem(spec)  # netem also draws the loss when it carries burst loss
        if not spec.ge_p:
            self.set_loss(spec.loss)  # also at 0: its counter rule counts the packets
        if spec.reset:
            self.set_reset(spec.reset)
        if rate:
            self.set_rate(rate, under_netem=bool(netem_keys))

    def set_loss(self, probability: float, *, tool: str | None = None) -> None:
        """Drop each packet crossing the link, in either direction, with ``probability``.

        The drop happens where the packet *arrives* (input hook of the receiving
        namespace): dropped on output, the sender's sendto() would fail with EPERM,
        which no real network does.
        """
        tool = tool or default_loss_tool()
        if tool is None:
            raise UnsupportedFault("kernel loss needs nft or iptables (apt-get install nftables)")
        for side in self.sides:
            if tool == "nft":
                self._nft(
                    side,
                    f"add rule inet {TABLE} ingress iifname {side.device} counter",
                    f"add rule inet {TABLE} ingress iifname {side.device} "
                    f"{_random_match(probability)}counter drop",
                )
            else:
                ns = ["ip", "netns", "exec", side.netns, "iptables", "-w", "5"]
                _check(self.runner([*ns, "-A", "INPUT", "-i", side.device], None))
                _check(
                    self.runner(
                        [
                            *ns, "-A", "INPUT", "-i", side.device, "-m", "statistic",
                            "--mode", "random", "--probability", f"{probability:.6f}",
                            "-j", "DROP",
                        ],
                        None,
                    )
                )  # fmt: skip
        self.loss_tool = tool

    def set_reset(self, probability: float) -> None:
        """Answer a random fraction of arriving TCP packets with a reset (per packet).

        Never an arriving RST itself: rejecting it would swallow the reset.
        """
        for side in self.sides:
            self._nft(
                side,
                f"add rule inet {TABLE} ingress iifname {side.device} tcp flags & rst == 0 "
                f"{_random_match(probability)}counter reject with tcp reset",
            )

    def set_rate(self, rate: str, *, under_netem: bool = False) -> None:
        """Token-bucket rate limit (e.g. ``1mbit``) on both veth ends."""
        if not _RATE_RE.match(rate):
            raise UnsupportedFault(f"rate must look like 1mbit, 500kbit or 10mbps, got {rate!r}")
        where = ["parent", "1:1", "handle", "10:"] if under_netem else ["root"]
        for side in self.sides:
            self._tc(side, "qdisc", "add", "dev", side.device, *where, "tbf", "rate", rate,
                     "burst", "32kbit", "latency", "400ms")  # fmt: skip

    def set_netem(self, spec: FaultSpec) -> None:
        """Delay, jitter, dup, reorder, corruption and burst loss with tc netem."""
        args = netem_args(spec)
        for side in self.sides:
            try:
                self._tc(side, "qdisc", "add", "dev", side.device, "root", "handle", "1:", *args)
            except NetnsError as err:
                if "unknown" not in str(err):
                    raise
                raise UnsupportedFault(
                    f"this kernel has no tc netem, needed for {spec} "
                    "(only loss, reset and a rate limit work without it): " + str(err)
                ) from err

    def clear_faults(self) -> None:
        """Remove every rule and qdisc this pair installed (the link stays)."""
        for side in self.sides:
            self.runner(self.exec_argv(side, ["nft", "delete", "table", "inet", TABLE]), None)
            self.runner(self.exec_argv(side, ["iptables", "-w", "5", "-F", "INPUT"]), None)
            self.runner(["tc", "-n", side.netns, "qdisc", "del", "dev", side.device, "root"], None)
        self.loss_tool = None

    def counters(self) -> dict[str, dict[str, int]]:
        """Packets seen and dropped/reset by our rules, per direction (``a->b``, ``b->a``).

        Rules sit at the receiver, so ``a->b`` is read in ``b``.
        """
        out: dict[str, dict[str, int]] = {}
        for side, name in ((self.b, "a->b"), (self.a, "b->a")):
            listed = self.runner(
                self.exec_argv(side, ["nft", "-j", "list", "table", "inet", TABLE]), None
            )
            counts = _nft_counts(listed.stdout) if listed.returncode == 0 else _zero_counts()
            if self.loss_tool == "iptables":
                table = self.runner(
                    self.exec_argv(side, ["iptables", "-w", "5", "-L", "INPUT", "-v", "-x", "-n"]),
                    None,
                )
                for key, value in _iptables_counts(table.stdout).items():
                    counts[key] += value
            out[name] = counts
        return out

    # plumbing

    def _ip(self, *args: str) -> None:
        _check(self.runner(["ip", *args], None))

    def _tc(self, side: Side, *args: str) -> None:
        _check(self.runner(["tc", "-n", side.netns, *args], None))

    def _nft(self, side: Side, *rules: str) -> None:
        # One nft transaction per call: the table and both chains are (re)declared,
        # which is idempotent, then the rules are added atomically.
        script = "\n".join(
            [
                f"add table inet {TABLE}",
                f"add chain inet {TABLE} ingress {{ type filter hook input priority 0; }}",
                *rules,
            ]
        )
        _check(self.runner(self.exec_argv(side, ["nft", "-f", "-"]), script + "\n"))


def _random_match(probability: float) -> str:
    """An nft match true with ``probability`` (numgen's modulus caps the threshold)."""
    threshold = round(probability * SCALE)
    return "" if threshold >= SCALE else f"numgen random mod {SCALE} < {threshold} "


def netem_args(spec: FaultSpec) -> list[str]:
    """``tc ... netem`` arguments for a spec's delay/jitter/dup/reorder/corrupt/burst loss.

    netem's reorder sends a packet *early* (undelayed) with the given probability;
    ours holds one back by ``gap``. With no other delay they coincide: delay every
    packet by ``gap`` except a fraction ``1 - reorder`` sent at once.
    """
    if spec.reorder and (spec.delay or spec.jitter):
        raise UnsupportedFault("netem cannot hold back a fraction of packets on top of delay")

    def pct(p: float) -> str:
        return f"{p * 100:.4f}%"

    args = ["netem"]
    if spec.reorder:
        args += ["delay", f"{spec.reorder_gap * 1e3:.3f}ms", "reorder", pct(1 - spec.reorder)]
    elif spec.delay or spec.jitter:
        args += ["delay", f"{spec.delay * 1e3:.3f}ms"]
        if spec.jitter:
            args.append(f"{spec.jitter * 1e3:.3f}ms")
    if spec.ge_p:
        # netem's gemodel: p, r, 1-h (loss in bad state), 1-k (loss in good state).
        args += ["loss", "gemodel", pct(spec.ge_p), pct(spec.ge_r), pct(spec.ge_loss),
                 pct(spec.loss)]  # fmt: skip
    if spec.dup:
        args += ["duplicate", pct(spec.dup)]
    if spec.corrupt:
        args += ["corrupt", pct(spec.corrupt)]
    return args


def _zero_counts() -> dict[str, int]:
    return {"packets": 0, "dropped": 0, "reset": 0}


def _iptables_counts(text: str) -> dict[str, int]:
    """Packets counted and dropped by our INPUT rules, from ``iptables -L -v -x -n``."""
    counts = _zero_counts()
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            counts["dropped" if "DROP" in fields else "packets"] += int(fields[0])
    return counts


def _nft_counts(text: str) -> dict[str, int]:
    """Sum the packet counters of our rules by verdict: passed (plain counter), drop, reject."""
    counts = _zero_counts()
    try:
        items = json.loads(text).get("nftables", [])
    except ValueError:
        return counts
    for item in items:
        rule = item.get("rule") if isinstance(item, dict) else None
        if not rule:
            continue
        exprs = rule.get("expr", [])
        packets = sum(e["counter"]["packets"] for e in exprs if "counter" in e)
        if any("drop" in e for e in exprs):
            counts["dropped"] += packets
        elif any("reject" in e for e in exprs):
            counts["reset"] += packets
        else:
            counts["packets"] += packets
    return counts


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def hold(spec: FaultSpec, rate: str | None) -> int:
    """``up``: create a pair with faults, say where, wait for SIGINT/SIGTERM, clean up.

    Run any server in ``b`` and any client in ``a`` meanwhile, e.g.
    ``ip netns exec NAME_B python -m services serve bank --host 10.213.0.2``.
    """
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with NetnsPair() as pair:
        pair.apply(spec, rate=rate)
        print(
            f"[NETNS UP] client a={pair.a.netns} ({pair.a.address}), "
            f"server b={pair.b.netns} ({pair.b.address}), faults {spec}, rate {rate or 'none'}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
        counts = pair.counters()
    print("[NETNS DOWN] " + json.dumps(counts, sort_keys=True), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m transports.netns {probe,cleanup,up}``."""
    parser = argparse.ArgumentParser(
        prog="python -m transports.netns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        choices=("probe", "cleanup", "up"),
        help="what works here; remove namespaces of dead processes; "
        "hold a faulty pair until interrupted",
    )
    parser.add_argument("--faults", default="", metavar="SPEC", help="for up: e.g. loss=0.1")
    parser.add_argument("--rate", help="for up: tc tbf rate limit, e.g. 10mbit")
    args = parser.parse_args(argv)
    if args.command == "cleanup":
        removed = cleanup_stale()
        print(f"removed {len(removed)} stale namespace(s)" + "".join(f"\n  {n}" for n in removed))
        return 0
    found = support()
    reason = found.skip_reason(tbf=bool(args.rate))
    if args.command == "up":
        if reason is not None:
            print(f"error: {reason}", file=sys.stderr)
            return 2
        try:
            return hold(FaultSpec.parse(args.faults), args.rate)
        except (ValueError, NetnsError) as err:  # FaultSpecError is a ValueError
            print(f"error: {err}", file=sys.stderr)
            return 2
    print(found.describe())
    print("kernel backend: " + ("usable" if reason is None else f"unavailable: {reason}"))
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
