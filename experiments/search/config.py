"""What a search or a replay is asked: the frozen config, the fault kinds, the shared options.

Fault kinds name what the search may do to a run. Link kinds become
``ScheduledLink`` actions, scaled to the client's timeout so that a "delay"
outlasts it and a "reorder" does not; crash kinds become crash points;
"partition" gives a link one timed window (``transports.schedule.Window``),
its edges halfway between the client's retries. "partition" is not in the
default kinds: ask for it (``--faults partition`` or with others).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from experiments.framework.options import choice, csv_list, duration
from experiments.search.bank import Model, Workload
from experiments.search.properties import Property
from experiments.search.space import DIRECTIONS, SearchSpace, partition_windows
from transports.retry import POLICY_NAMES, RetryPolicy, parse_policy
from transports.schedule import DROP, DUPLICATE, Action, Window, delay
from transports.semantics import Semantics
from transports.sim import CrashPoint

#: Below TCP's first retransmission (~204 ms on loopback) with room either side
#: of it and of the retries at 150, 300 ms ..., so that real sockets on a busy
#: machine take the same branch as the simulator.
DEFAULT_TIMEOUT = 0.150
#: Multiples of the timeout a "delay" holds a message back: past the first and
#: the third timeout, halfway between two retries.
LATE = (1.5, 3.5)
REORDER = 0.2  # a "reorder" holds a message back a fifth of the timeout: overtaken, no timeout


def _link_actions(kind: str, timeout: float) -> tuple[Action, ...]:
    if kind == "drop":
        return (DROP,)
    if kind == "dup":
        return (DUPLICATE,)
    factors = LATE if kind == "delay" else (REORDER,)
    return tuple(delay(round(f * timeout, 6)) for f in factors)


LINK_KINDS = ("drop", "dup", "delay", "reorder")
CRASH_KINDS = {"crash-before": CrashPoint.BEFORE_APPLY, "crash-after": CrashPoint.AFTER_APPLY}
PARTITION = "partition"
DEFAULT_FAULTS = (*LINK_KINDS, *CRASH_KINDS)
FAULT_KINDS = (*DEFAULT_FAULTS, PARTITION)
#: A partition window's edges: 0 and this many halfway points per deposit
#: (0, 0.5, 1.5, ... timeouts): windows up to 8.5 timeouts long for 3 deposits.
PARTITION_EDGES_PER_OP = 3
SEMANTICS = tuple(s.value for s in Semantics)
MODELS = tuple(m.value for m in Model)
PROPERTIES = tuple(p.value for p in Property)


@dataclass(frozen=True)
class SearchConfig:
    """A search's question: workload, network model, faults, property, budget."""

    semantics: Semantics = Semantics.AT_LEAST_ONCE
    model: Model = Model.DATAGRAM
    policy: str = "fixed"  # --policy: NAME[:k=v,...] without the timeout
    timeout: float = DEFAULT_TIMEOUT
    attempts: int = 20
    ops: int = 3
    retention: float | None = None  # at-most-once reply cache; None: its default (300 s)
    faults: tuple[str, ...] = DEFAULT_FAULTS
    directions: tuple[str, ...] = DIRECTIONS
    prop: Property = Property.NO_DUPLICATE
    examples: int = 300
    max_faults: int = 5
    clients: int = 2
    seed: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.examples <= 100_000:
            raise ValueError(f"--examples must be in 1..100000, got {self.examples}")
        if not 1 <= self.max_faults <= 20:
            raise ValueError(f"--max-faults must be in 1..20, got {self.max_faults}")
        if not 1 <= self.clients <= 4:
            raise ValueError(f"--clients must be in 1..4, got {self.clients}")
        self.workload()  # checks the policy, ops and attempts
        self.space()  # checks the fault kinds and directions

    @property
    def retry_policy(self) -> RetryPolicy:
        if "timeout=" in self.policy:
            raise ValueError("give the timeout with --timeout, not in --policy")
        return dataclasses.replace(parse_policy(self.policy), timeout=self.timeout)

    def workload(self) -> Workload:
        return Workload(self.semantics, self.retry_policy, self.attempts, self.ops, self.retention)

    def space(self) -> SearchSpace:
        actions = tuple(
            a for k in LINK_KINDS if k in self.faults for a in _link_actions(k, self.timeout)
        )
        crashes = tuple(point for k, point in CRASH_KINDS.items() if k in self.faults)
        windows: tuple[Window, ...] = ()
        if PARTITION in self.faults:
            windows = partition_windows(self.timeout, PARTITION_EDGES_PER_OP * self.ops)
        return SearchSpace(
            actions,
            crashes,
            self.directions,
            max_clients=self.clients,
            max_faults=self.max_faults,
            max_index=2 * self.ops - 1,  # enough to reach every call's first retry
            max_arrival=3 * self.ops - 1,
            windows=windows,
        )


def add_workload_options(p: argparse.ArgumentParser) -> None:
    """The options a search and a replay share: semantics, model, retries, workload, seed."""
    p.add_argument("--semantics", choices=SEMANTICS, default="at-least-once")
    p.add_argument(
        "--model",
        choices=MODELS,
        default="datagram",
        help="datagram: UDP-like (a drop is gone); tcp: a byte stream that retransmits a "
        "drop after its RTO (~204 ms), later messages waiting behind it; tcp-reset: a "
        "stream whose loss breaks the connection",
    )
    p.add_argument(
        "--policy",
        default="fixed",
        metavar="NAME[:k=v,...]",
        help=f"retry policy, one of {', '.join(POLICY_NAMES)}, with optional base=, cap=, "
        "on-timeout=; the timeout comes from --timeout",
    )
    p.add_argument("--timeout", type=duration, default=DEFAULT_TIMEOUT, help="per attempt")
    p.add_argument("--attempts", type=int, default=20, help="at most this many per call")
    p.add_argument("--ops", type=int, default=3, help="deposits per client, one at a time")
    p.add_argument(
        "--retention",
        type=duration,
        default=None,
        help="at-most-once: how long the server's reply cache keeps a reply (default: the "
        "cache's own, 300 s)",
    )
    p.add_argument("--property", dest="prop", choices=PROPERTIES, default="no-duplicate")
    p.add_argument("--seed", type=int, default=1, help="the search's seed (and jittered retries')")


def config_from_args(args: argparse.Namespace, **search: object) -> SearchConfig:
    """The config of parsed workload options plus the search's own (``search``)."""
    return SearchConfig(
        semantics=Semantics(args.semantics),
        model=Model(args.model),
        policy=args.policy,
        timeout=args.timeout,
        attempts=args.attempts,
        ops=args.ops,
        retention=args.retention,
        prop=Property(args.prop),
        seed=args.seed,
        **search,  # type: ignore[arg-type]
    )


def fault_kinds(text: str) -> list[str]:
    return csv_list(choice(FAULT_KINDS))(text)


def directions(text: str) -> list[str]:
    return csv_list(choice(DIRECTIONS))(text)
