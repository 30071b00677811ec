"""The Markdown report of ``python -m experiments.tcp_model``: summary, misses, reading, cells.

Real Markdown tables (tabulate, github format): the setup and a legend, the
summary (counts matching the kernel per timeout and semantics), the misses
with by how much, a reading (which counts miss where, in which direction,
and the TCP mechanisms the model leaves out), one table per timeout and
semantics (every count: model, TCP driver, kernel mean, range, SE, verdict)
and the kernel runs' own numbers (wall time, packets, measured drop rate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from experiments.framework.tables import Column, section, table
from experiments.tcp_model_record import TcpModelRecord
from experiments.tcp_model_stats import COUNTS, LATENCIES, Comparison, tally

HEADERS = {
    "ok": "ok", "unknown": "unknown", "duplicated": "dup", "phantom": "phantom",
    "attempts": "attempts", "p50_ms": "p50 ms", "p99_ms": "p99 ms",
}  # fmt: skip
Group = tuple[str, str]  # (timeout, semantics)
Row = tuple[TcpModelRecord, Comparison]

LEGEND = """\
**Legend.** *model*: the virtual-time simulator in stream mode (`tcp=retransmit`,
`transports/tcp_model`), deterministic, one run. *TCP driver*: real TCP sockets on
loopback with the same in-process fault layer (one run; real time). *kernel*: kernel TCP
between two network namespaces, nftables dropping packets at random (data, ACKs and SYNs
alike), `--kernel-runs` independent samples: their mean, min-max and the standard error
of the mean (SE, sample standard deviation / sqrt(n)). *verdict*: **match** when the
model lies within [min - SE, max + SE] of the kernel runs, else **miss**; *miss by*: the
model's distance from that band (+ above, - below). Counts are per cell of `ops`
operations: ok, unknown (the client never learnt the outcome), dup (applied twice or
more), phantom (applied although the client saw failed or unknown), attempts (requests
sent); p50/p99: latency of a logical operation in ms (the model's is virtual time).
Counts the semantics fixes (maybe: attempts = ops, dup = 0; at-most-once and
exactly-once: dup = 0) are shown but left out of the tallies ("fixed")."""

MECHANISMS = """\
Where the model and the kernel part, most important first (the evidence beyond these
tables is in results/kernel/tcp_model_notes.md; FAULTS.md lists what the model leaves
out):

- **The RTT estimate under per-packet loss (1.5 s timeouts above all).** Kernel TCP
  acknowledges a request in its reply and a reply in the next request, so a lost reply
  is also a lost ACK: the client probes the request again, and the reply's
  retransmission can echo the original request's timestamp, a valid RTT sample of
  about 200 ms. At loss 0.3 the kernel's client sockets ran with srtt up to 220 ms and
  RTOs up to 2.7 s (`ss -ti`). The model's ACKs are never lost and travel apart from
  the replies, so its connections keep srtt near 0 and a 200 ms RTO: it has too few
  unknowns, duplicates and retries and too short a p99 wherever two losses in a row
  can outlast the timeout.
- **RACK / SACK fast retransmit (100 ms timeouts).** The model retransmits only on the
  tail loss probe or the RTO. In Linux a later segment on the connection (the retry, or
  under `maybe` the next operation) is SACKed and RACK retransmits the lost one about
  one RTT later. With 100 ms timeouts the model keeps requests stuck until the probe:
  too many attempts, duplicates and unknowns, and a p50 of 400 ms at loss 0.3.
- **The end of a run.** The simulator drains the network after the last client is done,
  so every request TCP still holds reaches the server; the real runs (kernel and TCP
  driver) close the server and abort its connections. Under `maybe` at 100 ms that is
  the gap between unknown and phantom (applied although unknown).
- **The handshake.** A lost SYN-ACK gives a 1 s RTT sample and an RTO near 3 s; the
  model has that, but its later samples are all ~0 and pull the estimate down fast,
  where the kernel's (probably) include the ~200 ms ones above. With lossless handshakes (loss
  switched on once the eight connections were open) the kernel's unknowns at `maybe`,
  1.5 s, loss 0.3 fell from 55-104 to 23-68 (model: 23). Also, the real client's
  connect() blocks before its attempt timer is looked at; the simulator's call times
  out during the handshake and queues its retries.
- **A median on a step.** At loss 0.3, 0.7 x 0.7 = 0.49 of the operations see no loss,
  so p50 sits on the step between ~0.3 ms and ~200 ms; a shift of 2 % flips it.
- **CPU time.** The model has no service time and 100 us each way; the real cells run
  Python at both ends, so sub-millisecond p50s differ by a few tenths of a ms, and a
  latency capped by the timeout reads 1-2 ms over it (real timers fire late)."""


def render(records: Sequence[TcpModelRecord], env: Mapping[str, Any]) -> str:
    """The whole report as Markdown (printed, and written as NAME.md)."""
    if not records:
        return "No cells."
    groups = _groups(records)
    parts = [setup(records, env), LEGEND]
    parts.append(section("Summary: counts matching the kernel", summary_table(groups)))
    misses = miss_rows(records)
    if misses:
        parts.append(section("Misses: by how much", misses_table(misses)))
    parts.append(section("Reading", reading(records) + "\n\n" + MECHANISMS))
    for (timeout, semantics), group in groups.items():
        parts.append(section(f"Cells: timeout {timeout}, {semantics}", cell_table(group)))
    if any(r.kernel for r in records):
        parts.append(section("Kernel runs", kernel_table(records)))
    return "\n\n".join(parts)


def setup(records: Sequence[TcpModelRecord], env: Mapping[str, Any]) -> str:
    r = records[0]
    runs = sorted({len(x.kernel) for x in records})
    sources = sorted({x.kernel_source for x in records})
    tcp_sources = sorted({x.model_tcp_source for x in records})
    attempts = max(x.max_attempts for x in records)
    wall = env.get("kernel_wall_seconds")
    kernel_time = (
        f"kernel part {wall} s wall-clock ({env.get('kernel_run_seconds')} s summed over "
        f"runs)" if wall is not None else "no kernel part"
    )  # fmt: skip
    return (
        f"**Setup.** TCP only; {r.ops} ops x {r.clients} clients per cell, seed {r.seed}, "
        f"policy fixed(timeout=T) per table, max attempts {attempts} (maybe: 1); loss each "
        f"direction, per packet in the kernel, per message in the model. Kernel: "
        f"{env.get('fault_backend')}, {'/'.join(map(str, runs))} run(s) per cell, "
        f"{', '.join(sources)}; {kernel_time}; this invocation "
        f"{env.get('wall_seconds')} s with {env.get('jobs')} cell(s) at once. TCP driver: "
        f"{', '.join(tcp_sources)}. Python {env.get('python')} on {env.get('platform')}, "
        f"{env.get('cpus')} CPUs."
        + (f" Kernel runs measured by `{env['kernel_command']}`." if env.get("kernel_from")
           else "")
    )  # fmt: skip


def _groups(records: Sequence[TcpModelRecord]) -> dict[Group, list[TcpModelRecord]]:
    groups: dict[Group, list[TcpModelRecord]] = {}
    for r in records:
        groups.setdefault((r.timeout, r.semantics), []).append(r)
    return groups


def summary_table(groups: Mapping[Group, Sequence[TcpModelRecord]]) -> str:
    rows: list[list[str]] = []
    totals: dict[str, list[Comparison]] = {key: [] for key in (*COUNTS, "all")}
    for (timeout, semantics), group in groups.items():
        row = [timeout, semantics]
        every: list[Comparison] = []
        for count in COUNTS:
            comparisons = [r.comparisons[count] for r in group]
            every += comparisons
            totals[count] += comparisons
            fixed = all(c.structural for c in comparisons)
            row.append("fixed" if fixed else str(tally(comparisons)))
        totals["all"] += every
        row += [str(tally(every)), str(tally(every, tcp=True))]
        rows.append(row)
    total_row = ["all", ""] + [str(tally(totals[c])) for c in COUNTS]
    rows.append([*total_row, str(tally(totals["all"])), str(tally(totals["all"], tcp=True))])
    headers = ["timeout", "semantics", *(HEADERS[c] for c in COUNTS), "model", "TCP driver"]
    return _markdown(rows, headers)


def miss_rows(records: Sequence[TcpModelRecord]) -> list[Row]:
    return [
        (r, c)
        for r in records
        for c in r.comparisons.values()
        if c.match is False and not c.structural
    ]


def misses_table(rows: Sequence[Row]) -> str:
    columns: list[Column[Row]] = [
        Column("timeout", lambda p: p[0].timeout),
        Column("semantics", lambda p: p[0].semantics),
        Column("loss", lambda p: p[0].loss),
        Column("count", lambda p: HEADERS[p[1].count]),
        *_comparison_columns(),
        Column("model / mean", _ratio),
    ]
    return table(rows, columns, tablefmt="github", disable_numparse=True)


def cell_table(group: Sequence[TcpModelRecord]) -> str:
    rows = [(r, r.comparisons[count]) for r in group for count in COUNTS]
    columns: list[Column[Row]] = [
        Column("loss", lambda p: p[0].loss),
        Column("count", lambda p: HEADERS[p[1].count]),
        *_comparison_columns(),
        Column("verdict", lambda p: _verdict(p[1])),
    ]
    return table(rows, columns, tablefmt="github", disable_numparse=True)


def _comparison_columns() -> list[Column[Row]]:
    def spread(read: Callable[[Comparison], str]) -> Callable[[Row], str]:
        return lambda p: "-" if p[1].kernel is None else read(p[1])

    return [
        Column("model", lambda p: _number(p[1].count, p[1].model)),
        Column("TCP driver", lambda p: _number(p[1].count, p[1].model_tcp)),
        Column("kernel mean", spread(lambda c: _number(c.count, c.kernel.mean, mean=True))),  # type: ignore[union-attr]
        Column("kernel min-max", spread(_range)),
        Column("SE", spread(lambda c: _number(c.count, c.kernel.se, mean=True))),  # type: ignore[union-attr]
        Column("miss by", lambda p: _signed(p[1])),
    ]


def kernel_table(records: Sequence[TcpModelRecord]) -> str:
    def drop(r: TcpModelRecord, direction: str) -> str:
        packets = sum(s.packets.get(direction, {}).get("packets", 0) for s in r.kernel)
        dropped = sum(s.packets.get(direction, {}).get("dropped", 0) for s in r.kernel)
        return f"{dropped / packets:.3f} of {packets // max(1, len(r.kernel))}" if packets else "-"

    columns: list[Column[TcpModelRecord]] = [
        Column("timeout", lambda r: r.timeout),
        Column("semantics", lambda r: r.semantics),
        Column("loss", lambda r: r.loss),
        Column("runs", lambda r: len(r.kernel)),
        Column("s per run (mean)", lambda r: f"{_mean(s.seconds for s in r.kernel):.1f}"),
        Column("dropped a->b of packets/run", lambda r: drop(r, "a->b")),
        Column("dropped b->a of packets/run", lambda r: drop(r, "b->a")),
    ]
    with_runs = [r for r in records if r.kernel]
    return table(with_runs, columns, tablefmt="github", disable_numparse=True)


def reading(records: Sequence[TcpModelRecord]) -> str:
    """Which counts miss, where and in which direction (computed from the cells)."""
    compared = [c for r in records for c in r.comparisons.values() if not c.structural]
    if not any(c.match is not None for c in compared):
        return "No kernel runs to compare with (--skip-kernel)."
    lines = [f"The model matches {tally(compared)} compared counts overall "
             f"(TCP driver: {tally(compared, tcp=True)})."]  # fmt: skip
    for timeout in dict.fromkeys(r.timeout for r in records):
        here = [r for r in records if r.timeout == timeout]
        parts = []
        for count in COUNTS:
            cs = [r.comparisons[count] for r in here if not r.comparisons[count].structural]
            t = tally(cs)
            if t.compared and t.matched < t.compared:
                above = sum(1 for c in cs if (c.miss or 0) > 0)
                below = sum(1 for c in cs if (c.miss or 0) < 0)
                parts.append(f"{HEADERS[count]} misses {t.compared - t.matched} of {t.compared} "
                             f"(model above the kernel {above}, below {below})")  # fmt: skip
        total = tally([c for r in here for c in r.comparisons.values() if not c.structural])
        body = "; ".join(parts) if parts else "every count matches"
        lines.append(f"- Timeout {timeout}: {total} match; {body}.")
    return "\n".join(lines)


def _mean(values: Iterable[float]) -> float:
    listed = list(values)
    return sum(listed) / len(listed) if listed else 0.0


def _verdict(c: Comparison) -> str:
    if c.match is None:
        return "-"
    text = "match" if c.match else "**miss**"
    return f"{text} (fixed)" if c.structural else text


def _number(count: str, value: float | None, *, mean: bool = False) -> str:
    if value is None:
        return "-"
    if count in LATENCIES:
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}" if mean else f"{value:.0f}"


def _range(c: Comparison) -> str:
    assert c.kernel is not None
    return f"{_number(c.count, c.kernel.min)}-{_number(c.count, c.kernel.max)}"


def _signed(c: Comparison) -> str:
    if c.miss is None or c.miss == 0:
        return ""
    return ("+" if c.miss > 0 else "-") + _number(c.count, abs(c.miss), mean=True)


def _ratio(p: Row) -> str:
    c = p[1]
    if c.kernel is None or c.kernel.mean == 0:
        return "-"
    return f"{c.model / c.kernel.mean:.2f}"


def _markdown(rows: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers, tablefmt="github", disable_numparse=True)
