"""The command line: ``python -m experiments.search [replay SCHEDULE | reference] [options]``.

Without a subcommand it searches (``tool.run_search``) and prints the answer;
``replay`` runs one schedule on real TCP and UDP sockets and in the
simulator; ``reference`` regenerates results/search.* (``reference``).
Exit status: 0 with an answer (a counterexample or none), 1 when a replay's
real run disagrees with the simulator, 2 on a refused command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from experiments.framework.options import choice, csv_list, error
from experiments.search.bank import BankTemplate
from experiments.search.config import (
    DEFAULT_FAULTS,
    add_workload_options,
    config_from_args,
    directions,
    fault_kinds,
)
from experiments.search.finder import scratch_storage
from experiments.search.reference import main as reference_main
from experiments.search.replay import REPLAY_SECONDS, REPLAYS, Replayer
from experiments.search.space import DIRECTIONS
from experiments.search.tool import render_replay, render_search, run_search
from transports.progname import invoked_as
from transports.schedule import FaultSchedule

PROG = invoked_as("experiments.search")


def search_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Search, with Hypothesis in the simulator, for the smallest fault schedule "
        "that breaks a property of bank deposits; print it, why it breaks the property, and "
        "the command that replays it. Subcommands: 'replay SCHEDULE' (real TCP and UDP "
        "sockets and the simulator), 'reference' (regenerate results/search.*).",
    )
    add_workload_options(p)
    p.add_argument(
        "--faults",
        type=fault_kinds,
        default=",".join(DEFAULT_FAULTS),
        help="fault kinds the search may use: drop, dup, delay (past the timeout), reorder "
        "(held back a fifth of the timeout), crash-before, crash-after (apply), partition "
        "(a timed window on one link, edges halfway between retries; not in the default)",
    )
    p.add_argument(
        "--directions",
        type=directions,
        default=",".join(DIRECTIONS),
        help="which messages link faults may hit: request, reply",
    )
    p.add_argument("--examples", type=int, default=300, help="the search budget")
    p.add_argument("--max-faults", type=int, default=5, help="faults per schedule")
    p.add_argument("--clients", type=int, default=2, help="runs have 1 to this many clients")
    return p


def replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} replay",
        description="Run one fault schedule over real TCP and UDP loopback sockets and in the "
        "simulator (stream and datagram mode); print the audit of each and where they differ.",
    )
    p.add_argument("schedule", help="e.g. 'client0 reply: #0 drop; crash before request #1'")
    add_workload_options(p)
    p.add_argument("--clients", type=int, default=1, help="clients, 1..4")
    p.add_argument(
        "--on",
        type=csv_list(choice(REPLAYS)),
        default=",".join(REPLAYS),
        help="where to run it",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["replay"]:
        return replay_main(args[1:])
    with scratch_storage():
        if args[:1] == ["reference"]:
            return reference_main(args[1:])
        return search_main(args)


def search_main(argv: Sequence[str]) -> int:
    args = search_parser().parse_args(argv)
    try:
        config = config_from_args(
            args,
            faults=tuple(args.faults),
            directions=tuple(args.directions),
            examples=args.examples,
            max_faults=args.max_faults,
            clients=args.clients,
        )
    except ValueError as err:
        return error(err)
    with BankTemplate.temporary(config.clients) as bank:
        print(render_search(run_search(config, bank)))
    return 0


def replay_main(argv: Sequence[str]) -> int:
    args = replay_parser().parse_args(argv)
    try:
        schedule = FaultSchedule.parse(args.schedule)
        config = config_from_args(args, clients=args.clients)
        named = len(schedule.clients)
        if named > args.clients:
            raise ValueError(
                f"the schedule names client{named - 1}; replay it with --clients {named}"
            )
    except ValueError as err:
        return error(err)
    with BankTemplate.temporary(config.clients) as bank:
        replayer = Replayer(bank, config.workload(), config.model, args.clients, config.seed)
        try:
            result = replayer.replay(schedule, args.on)
        except TimeoutError:
            return error(f"a real replay took longer than {REPLAY_SECONDS:g} s; stopped it")
    print(render_replay(config, schedule, result))
    pairs = [r for r in ("udp", "tcp") if r in result.runs and f"sim-{r}" in result.runs]
    return 0 if all(result.agree(r) for r in pairs) else 1
