"""``python -m experiments.search reference``: reference searches, replayed, in results/search.*.

Each semantics against "no duplicate" under drop, duplicate and crash faults
(datagram model), at-most-once with crashes on arrival only, and
at-least-once over the retransmitting TCP model with drops only, with a
timeout below TCP's RTO (both directions, and requests only: no reply is
ever lost) and above it; then partitions: at-most-once with a reply cache
that keeps replies 225 ms (1.5 timeouts) and with its default 300 s, and
exactly-once with partitions, drops, duplicates and crashes. Every
counterexample found is replayed on real TCP and UDP loopback sockets and in
the simulator. results/search.md: the summary table, its legend, a reading
computed from the records, and each search's transcript.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from experiments.framework.options import add_output_options, environment, error, run_folder
from experiments.framework.records import Record
from experiments.framework.results import Results, check_writable, write_results
from experiments.framework.tables import legend, section
from experiments.search.bank import BankTemplate, Model
from experiments.search.config import SearchConfig
from experiments.search.properties import Property
from experiments.search.replay import Replay, Replayer
from experiments.search.tool import SearchAnswer, render_replay, render_search, run_search
from transports.semantics import Semantics

CRASHY = ("drop", "dup", "crash-before", "crash-after")
DEFAULT_EXAMPLES = 1000
#: A reply cache retention between the first and the second retry (150 ms
#: timeout): a reply-only partition that outlasts it makes a retry run again.
SHORT_RETENTION = 0.225


def searches(examples: int) -> list[SearchConfig]:
    def at(semantics: Semantics, **kw: object) -> SearchConfig:
        return SearchConfig(semantics, examples=examples, **kw)  # type: ignore[arg-type]

    return [
        *(at(s, faults=CRASHY) for s in Semantics),
        at(Semantics.AT_MOST_ONCE, faults=("drop", "dup", "crash-before")),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",)),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",), directions=("request",)),
        at(Semantics.AT_LEAST_ONCE, model=Model.TCP, faults=("drop",), timeout=1.0),
        at(Semantics.AT_MOST_ONCE, faults=("partition",), retention=SHORT_RETENTION),
        at(Semantics.AT_MOST_ONCE, faults=("partition",)),
        at(Semantics.EXACTLY_ONCE, faults=(*CRASHY, "partition")),
    ]


@dataclass(frozen=True, kw_only=True)
class SearchRecord(Record):
    semantics: str
    model: str
    faults: str
    directions: str
    timeout_ms: float
    retention_ms: float | None  # at-most-once reply cache; None: its default, 300 s
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
        retention_ms=None if c.retention is None else c.retention * 1e3,
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


def run(config: ReferenceConfig) -> tuple[list[SearchRecord], list[str]]:
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
    return records, texts


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m experiments.search reference",
        description="Run the reference searches (each semantics against no-duplicate, the TCP "
        "model below and above its RTO, partitions against a short and the default reply "
        "cache), replay what they find, write results/search.*",
    )
    p.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="budget per search")
    add_output_options(p, "search", quick=None, progress=False)
    args = p.parse_args(argv)
    # No --out: this run's own folder (results/runs/<UTC time>), as every experiment.
    config = ReferenceConfig(args.examples, args.out or run_folder(), args.name)
    try:
        check_writable(config.out)
        searches(config.examples)  # checks the budget before anything runs
    except ValueError as err:
        return error(err)
    records, texts = run(config)
    summary = summary_table(records)
    print(summary)
    env = environment()
    # Run as ``-m experiments.search``, whose __main__ module is experiments.search.__main__.
    env["argv"] = shlex.join(["python", "-m", "experiments.search", "reference", *argv])
    results = Results(
        {"examples": config.examples, "property": Property.NO_DUPLICATE.value},
        env,
        {"searches": records},
        document(summary, records, texts),
        records,
        title="Fault-schedule searches (python -m experiments.search)",
        reading=reading(records),
        legend=LEGEND,
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
            "-" if r.retention_ms is None else f"{r.retention_ms:g}",
            r.counterexample or f"none in {r.examples} examples",
            " ".join(f"{w} {n}" for w, n in r.duplicated.items()) or "-",
            "-" if r.udp_agrees is None else ("yes" if _agrees(r) else "NO"),
        ]
        for r in records
    ]
    headers = ["semantics", "model", "faults", "timeout ms", "reply cache ms"]
    headers += ["1-minimal counterexample", "duplicated per replay", "real = sim"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _agrees(r: SearchRecord) -> bool:
    return bool(r.udp_agrees and r.tcp_agrees)


LEGEND = legend(
    "One row per search: Hypothesis, in the simulator, looks for the smallest fault schedule "
    "that applies a deposit twice (property no-duplicate), with 1-2 clients making 3 deposits "
    "each; each counterexample is then replayed on real UDP and TCP loopback sockets and in "
    "the simulator in datagram and stream mode. The transcripts below give every search's "
    "full answer and replay.",
    [
        ("semantics", "the server's and client's call semantics"),
        (
            "model",
            "the search's network model: datagram (a drop is gone) or tcp (Linux's "
            "retransmission model: a drop arrives after the RTO, ~204 ms)",
        ),
        (
            "faults",
            "fault kinds the search may use (in brackets: the only direction link "
            "faults may hit); partition: one timed window per link, edges halfway between retries",
        ),
        ("timeout ms", "the client's fixed timeout per attempt (up to 20 attempts)"),
        (
            "reply cache ms",
            "how long the at-most-once reply cache keeps a reply "
            "(-: its default, 300 s, longer than any run)",
        ),
        (
            "1-minimal counterexample",
            "the schedule found, in the tool's text form; removing "
            "any one fault (or narrowing a partition window) repairs it; or none in the budget",
        ),
        (
            "duplicated per replay",
            "deposits applied twice or more in each replay: sim-udp, real udp, sim-tcp, real tcp",
        ),
        (
            "real = sim",
            "whether each real replay agrees with its simulator mode deposit by "
            "deposit (times applied, what the client was told, by which attempt's reply)",
        ),
    ],
)


def reading(records: Sequence[SearchRecord]) -> str:
    """What the searches show, as Markdown bullets computed from their records."""
    found = [r for r in records if r.counterexample]
    none = [r for r in records if not r.counterexample]
    sizes = " or ".join(str(n) for n in sorted({r.size for r in found})) or "no"
    lines = [
        f"- {len(records)} searches: {len(found)} found a 1-minimal counterexample "
        f"({sizes} faults), {len(none)} found none within their budget.",
        f"- In {sum(_agrees(r) for r in found)} of the {len(found)} counterexamples the real "
        "UDP and TCP replays agree with the simulator, deposit by deposit.",
    ]
    exactly = [r for r in records if r.semantics == Semantics.EXACTLY_ONCE.value]
    if exactly:
        broken = sum(bool(r.counterexample) for r in exactly)
        kinds = "; ".join(r.faults for r in exactly)
        lines.append(
            f"- Exactly-once: {broken} counterexamples in {len(exactly)} searches "
            f"(faults: {kinds})."
        )
    for r in records:
        if "partition" not in r.faults:
            continue
        if not r.counterexample:
            lines.append(f"- {_name(r)}: none in {r.examples} examples.")
            continue
        why = ""
        if r.retention_ms is not None and r.semantics == Semantics.AT_MOST_ONCE.value:
            why = (
                f": a partition that cuts replies until the reply cache ({r.retention_ms:g} ms) "
                "has let the first one go, so the retry that gets through finds no cached "
                "reply and runs the deposit again"
            )
        lines.append(
            f"- {_name(r)}: `{r.counterexample}` applies a deposit twice{why} "
            f"(duplicated per replay: {_duplicated(r)})."
        )
    return "\n".join(lines)


def _name(r: SearchRecord) -> str:
    cache = "" if r.retention_ms is None else f", reply cache {r.retention_ms:g} ms"
    return f"{r.semantics} over {r.model} with {r.faults}{cache}"


def _duplicated(r: SearchRecord) -> str:
    return ", ".join(f"{w} {n}" for w, n in r.duplicated.items())


def document(summary: str, records: Sequence[SearchRecord], texts: Sequence[str]) -> str:
    """The Markdown body: the summary table, then each search's transcript."""
    parts = [section("Summary", summary)]
    for k, (r, text) in enumerate(zip(records, texts, strict=True), 1):
        heading = f"### {k}. {_name(r)}, timeout {r.timeout_ms:g} ms"
        if r.directions != "reply,request":
            heading += f", {r.directions} only"
        parts.append(f"{heading}\n\n```text\n{text}\n```")
    return "\n\n".join([parts[0], "## Transcripts", *parts[1:]])
