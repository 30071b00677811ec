"""What the kernel backend can do on this machine, found by trying it, and why not when it cannot.

``probe()`` builds a scratch namespace pair and tries each fault (nft and
iptables loss, tc tbf, tc netem); ``support()`` caches that per process, and
``KernelSupport.skip_reason()`` says what is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from transports.faults import FaultSpec
from transports.netns.commands import NetnsError, Runner, run_command
from transports.netns.pair import NetnsPair


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


@functools.cache
def support() -> KernelSupport:
    """``probe()`` with the real commands, once per process."""
    return probe()
