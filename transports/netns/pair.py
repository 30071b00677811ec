"""The namespace pair's lifecycle: two namespaces joined by veth, created and always removed.

Every namespace, and with it every rule, qdisc and veth inside, is removed on
exit: also on an exception, on Ctrl-C and on SIGTERM (turned into SystemExit
while a pair is open). Names carry the owner's pid, so ``cleanup_stale`` can
remove what a process killed outright left behind. The faults themselves come
from ``transports.netns.rules.KernelRules``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType

from transports.netns.commands import Runner, check, run_command
from transports.netns.partition import PartitionTimer
from transports.netns.rules import KernelRules

PREFIX = "rtfault"
_counter = itertools.count(1)
_SIGTERM_TRAPS = [0]  # open pairs that rely on our SIGTERM handler


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
class NetnsPair(KernelRules):
    """Two namespaces joined by veth, with kernel faults between them. Use as a context.

    ``a`` (10.213.0.1) is the client side, ``b`` (10.213.0.2) the server side.
    Loss applies independently to each direction, per packet, where it arrives.
    """

    runner: Runner = run_command
    prefix: str = PREFIX
    a: Side = field(init=False)
    b: Side = field(init=False)
    loss_tool: str | None = field(default=None, init=False)
    partition_timer: PartitionTimer | None = field(default=None, init=False)
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
        timer, self.partition_timer = self.partition_timer, None
        try:
            if timer is not None:
                timer.stop()  # before its namespaces go: it would cut a link that is gone
        finally:
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

    # plumbing

    def _ip(self, *args: str) -> None:
        check(self.runner(["ip", *args], None))


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
