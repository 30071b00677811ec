"""The kernel faults on a namespace pair's veth link: the rules and qdiscs, and their counters.

* packet loss: nftables ``numgen random`` drop where packets arrive (iptables
  ``statistic --mode random`` when nft is missing);
* TCP resets: ``reject with tcp reset`` for a random fraction of arriving packets;
* rate limiting: tc tbf; delay, jitter, dup, reorder, corruption, burst loss: tc netem;
* a partition: a drop rule added and removed on its schedule (``transports.netns.partition``).

``KernelRules`` holds the methods; ``transports.netns.pair.NetnsPair`` mixes them
into the pair, which supplies the runner and the two sides.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING

from transports.faults import FaultSpec, Partition
from transports.netns.commands import NetnsError, Runner, UnsupportedFault, check
from transports.netns.partition import PartitionTimer, check_partition, cut_sides, set_cut

if TYPE_CHECKING:  # the pair mixes these rules in: import for typing only
    from transports.netns.pair import Side

TABLE = "rtfault"  # our nftables table (family inet) in each namespace
SCALE = 1_000_000  # numgen resolution: probabilities are applied to 1e-6
_RATE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$")


def default_loss_tool() -> str | None:
    """nft when installed, else iptables, else None."""
    return "nft" if shutil.which("nft") else "iptables" if shutil.which("iptables") else None


class KernelRules:
    """Kernel faults on both directions of the link between ``a`` and ``b`` (a mixin)."""

    # Supplied by the pair (transports.netns.pair.NetnsPair).
    runner: Runner
    a: Side
    b: Side
    loss_tool: str | None
    partition_timer: PartitionTimer | None

    @property
    def sides(self) -> tuple[Side, Side]:
        return (self.a, self.b)

    def exec_argv(self, side: Side, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside ``side``'s namespace."""
        return ["ip", "netns", "exec", side.netns, *argv]

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
        if not spec.partition.is_zero:
            self.start_partition(spec.partition)

    def start_partition(self, partition: Partition, *, origin: float | None = None) -> None:
        """Cut and heal the link on ``partition``'s schedule from ``origin`` (monotonic; now).

        A background timer adds the drop rule when each window opens and
        removes it when it closes; ``clear_faults`` (and closing the pair) stops it.
        """
        check_partition(partition)
        self.stop_partition()
        sides = cut_sides(partition.cut, self.a, self.b)
        self.partition_timer = PartitionTimer(
            partition, lambda on: set_cut(self.runner, sides, on), origin=origin
        )

    def stop_partition(self) -> None:
        """Stop the partition's timer and heal the link (a no-op without one)."""
        timer, self.partition_timer = self.partition_timer, None
        if timer is None:
            return
        try:
            timer.stop()
        finally:
            set_cut(self.runner, self.sides, False)

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
                ns = self.exec_argv(side, ["iptables", "-w", "5"])
                check(self.runner([*ns, "-A", "INPUT", "-i", side.device], None))
                check(
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
        self.stop_partition()
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

    def _tc(self, side: Side, *args: str) -> None:
        check(self.runner(["tc", "-n", side.netns, *args], None))

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
        check(self.runner(self.exec_argv(side, ["nft", "-f", "-"]), script + "\n"))


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
