"""``python -m experiments.search reference``: reference searches, replayed, in results/search.*.

Each semantics against "no duplicate" under drop, duplicate and crash faults
(datagram model), at-most-once with crashes on arrival only, and
at-least-once over the retransmitting TCP model with drops only, with a
timeout below TCP's RTO (both directions, and requests only: no reply is
ever lost) and above it. Every counterexample found is replayed on real TCP
and UDP loopback sockets and in the simulator.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from experiments.framework.options import add_output_options, environment, error
from experiments.framework.records import Record
from experiments.framework.results import Results, write_results
from experiments.search.bank import BankTemplate, Model
from experiments.search.config import SearchConfig
from experiments.search.properties import Property
from experiments.search.replay import Replay, Replayer
from experiments.search.tool import SearchAnswer, render_replay, render_search, run_search
from transports.semantics import Semantics

CRASHY = ("drop", "dup", "crash-before", "crash-after")
DEFAULT_EXAMPLES = 1000


def searches(examples: int) -> list[SearchConfig]:
    def at(semantics: Semantics, **kw: object) -> SearchConfig:
        return SearchConfig(semantics, examples=examples, **kw)  # type: ignore[arg-type]

    return [
        *(at(s, faults=CRASHY) for s in Semantics),
        at(Semantics.AT_MOST_ONCE, faults=("drop", "dup", "crash-before")),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",)),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",), directions=("request",)),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",), timeout=1.0),
    ]


@dataclass(frozen=True, kw_only=True)
class SearchRecord(Record):
    semantics: str
    model: str
    faults: str
    directions: str
    timeout_ms: float
    property: str
    examples: int
    runs: int
    counterexample: str  # "" when none was found
    size: int  # faults in it
    clients: int
    duplicated: dict[str, int]  # per replay: deposits applied twice or more
    udp_agrees: bool | None
    tcp_agrees: bool | None


def record(answer: SearchAnswer, result: Replay | None) -> SearchRecord:
    c = answer.config
    return SearchRecord(
        semantics=c.semantics.value,
        model=c.model.value,
        faults=",".join(c.faults),
        directions=",".join(c.directions),
        timeout_ms=c.timeout * 1e3,
        property=c.prop.value,
        examples=c.examples,
        runs=answer.runs,
        counterexample=str(answer.schedule) if answer.schedule is not None else "",
        size=answer.schedule.faults if answer.schedule is not None else 0,
        clients=answer.clients or 0,
        duplicated={w: r.audit.duplicated for w, r in result.runs.items()} if result else {},
        udp_agrees=result.agree("udp") if result else None,
        tcp_agrees=result.agree("tcp") if result else None,
    )


@dataclass(frozen=True)
class ReferenceConfig:
    examples: int
    out: Path
    name: str


def run(config: ReferenceConfig) -> tuple[list[SearchRecord], str]:
    records, texts = [], []
    for question in searches(config.examples):
        with BankTemplate.temporary(question.clients) as bank:
            answer = run_search(question, bank)
            text = render_search(answer)
            result = None
            if answer.schedule is not None and answer.clients is not None:
                replayer = Replayer(
                    bank, question.workload(), question.model, answer.clients, question.seed
                )
                result = replayer.replay(answer.schedule)
                text += "\n\n" + render_replay(question, answer.schedule, result)
        print(text + "\n", flush=True)
        texts.append(text)
        records.append(record(answer, result))
    return records, "\n\n".join(texts)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.search reference",
        description="Run the reference searches (each semantics against no-duplicate, the TCP "
        "model below and above its RTO), replay what they find, write results/search.*",
    )
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="budget per search")
    add_output_options(p, "search", quick=None, progress=False)
    args = p.parse_args(argv)
    config = ReferenceConfig(args.examples, args.out, args.name)
    try:
        searches(config.examples)  # checks the budget before anything runs
    except ValueError as err:
        return error(err)
    records, text = run(config)
    summary = summary_table(records)
    print(summary)
    env = environment()
    # Run as ``-m experiments.search``, whose __main__ module is experiments.search.__main__.
    env["argv"] = shlex.join(["python", "-m", "experiments.search", "reference", *argv])
    results = Results(
        {"examples": config.examples, "property": Property.NO_DUPLICATE.value},
        env,
        {"searches": records},
        summary + "\n\n" + text,
        records,
        title="Fault-schedule searches (python -m experiments.search)",
    )
    written = write_results(config.out, config.name, results)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


def summary_table(records: Sequence[SearchRecord]) -> str:
    rows = [
        [
            r.semantics,
            r.model,
            r.faults + ("" if r.directions == "reply,request" else f" ({r.directions})"),
            f"{r.timeout_ms:g}",
            r.counterexample or f"none in {r.examples} examples",
            " ".join(f"{w} {n}" for w, n in r.duplicated.items()) or "-",
            "-" if r.udp_agrees is None else ("yes" if r.udp_agrees and r.tcp_agrees else "NO"),
        ]
        for r in records
    ]
    headers = ["semantics", "model", "faults", "timeout ms", "1-minimal counterexample"]
    headers += ["duplicated per replay", "real = sim"]
    return tabulate(rows, headers=headers)
