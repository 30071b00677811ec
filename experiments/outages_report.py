"""Tables, legend and plot of ``experiments.outages``.

One table per partition (transport, direction, length), its rows grouped by
policy and budget (each shown once per group); the legend of the columns
(``LEGEND``); the plot of the server's load per 10 ms window around the
partition, one line per retry policy, a row of panels per transport. The
reading is ``experiments.outages_reading``.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.cell_record import AUDIT_LEGEND, SEMANTICS_MEANING
from experiments.framework.experiment import Environment
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.tables import Column, legend, section, table
from experiments.outages_cell import BUDGET_RATIO, BUDGET_TOKENS, WINDOW, OutageRecord
from experiments.outages_reading import LOAD_SEMANTICS
from experiments.retries_reading import timeout_text
from transports.faults import Cut
from transports.retry import POLICY_NAMES


def _bound(r: OutageRecord) -> str:
    return "" if r.budget_bound is None else f"{r.budget_bound:.2f}"


#: Shown once per group of rows (the first row of each policy and budget).
GROUP: tuple[Column[OutageRecord], ...] = (
    Column("policy", lambda r: r.cell.policy),
    Column("budget", lambda r: "yes" if r.cell.budget else "no"),
)
BOUND = Column("budget bound", _bound)
COLUMNS: tuple[Column[OutageRecord], ...] = (
    *GROUP,
    Column("semantics", lambda r: r.cell.semantics.value),
    Column("ok", lambda r: r.audit.ok),
    Column("failed", lambda r: r.audit.failed),
    Column("unknown", lambda r: r.audit.unknown),
    Column("duplicated", lambda r: r.audit.duplicated),
    Column("phantom", lambda r: r.audit.phantom),
    Column("attempts", lambda r: r.audit.attempts),
    Column("attempts/op", lambda r: r.amplification),
    BOUND,
    Column("steady /10ms", lambda r: r.steady),
    Column("peak /10ms", lambda r: r.peak),
    Column("peak/steady", lambda r: r.peak_ratio),
    Column("drain s", lambda r: r.drain_s),
    Column("p50 ms", lambda r: r.late_p50_ms),
    Column("p99 ms", lambda r: r.late_p99_ms),
    Column("max ms", lambda r: r.late_max_ms),
)

LEGEND = legend(
    "Each row is one cell: a fresh ledger, the steady load from every client, one "
    "partition (the table's caption: transport, what is cut, for how long, and its fault "
    "spec), then the audit of every operation. `sim-udp`, `sim-tcp`: the simulator in "
    "virtual time, whose server answers at once however many requests arrive (a cut "
    "datagram is lost; sim-tcp retransmits on TCP's RTO back-off until a copy goes out "
    "after the heal); `udp`, `tcp`: real loopback sockets, one server process, wall-clock "
    "time. Counts are operations of the cell unless the column says otherwise.",
    [
        ("policy", "retry policy: `fixed` retries at once after each timeout; `expo` sleeps "
         "min(cap, base·2^(n-2)) before attempt n; `expo-full` a uniform draw in [0, that]; "
         "`expo-equal` half of it plus a uniform draw in the other half; `decorrelated` "
         "min(cap, uniform(base, 3·previous sleep)); `adaptive` no sleep, each attempt "
         "waits the client's RTO estimate (RFC 6298), doubled on each timeout"),
        ("budget", f"`yes`: gRFC A6 retry throttling per client: {BUDGET_TOKENS:g} tokens, a "
         f"failed attempt takes 1, a reply gives {BUDGET_RATIO:g} back, a retry only while "
         f"more than {BUDGET_TOKENS / 2:g} remain. Shown with the policy on the first row "
         "of its group"),
        ("semantics", SEMANTICS_MEANING),
        *(item for item in AUDIT_LEGEND if item[0] in ("ok / failed / unknown", "phantom")),
        ("duplicated", "operations the ledger applied twice or more"),
        ("attempts", "requests the clients sent, in total"),
        ("attempts/op", "attempts per operation: the load amplification (1.00: no retry)"),
        ("budget bound", "the most attempts per operation the budget allows: 1 + (clients·"
         f"{BUDGET_TOKENS / 2:g} + {BUDGET_RATIO:g}·replies) / operations, replies being "
         "ok + failed (a client starts with its tokens, and only replies earn more); shown "
         "only for tables with a budgeted row"),
        ("steady /10ms", "mean server arrivals (attempts reaching the server) per 10 ms "
         "window, from one interval after time 0 (every client started) to the partition"),
        ("peak /10ms", "the most server arrivals in one 10 ms window from the heal to the "
         "end of the load"),
        ("peak/steady", "peak /10ms over steady /10ms: how far the heal's burst exceeds the "
         "steady load"),
        ("drain s", "seconds from the heal until the last client is back on schedule (its "
         "first operation due after the heal finds the one before it finished; a client "
         "still behind at the end counts until its last call ends)"),
        ("p50 / p99 / max ms", "operation latency from its scheduled start (not its "
         "first attempt: the wait in the client's backlog counts) to its outcome, "
         "milliseconds (sim: virtual time)"),
    ],
)  # fmt: skip


def _groups(records: Sequence[OutageRecord]) -> dict[tuple[str, Cut, float], list[OutageRecord]]:
    groups: dict[tuple[str, Cut, float], list[OutageRecord]] = {}
    for r in records:
        groups.setdefault((r.cell.transport, r.cell.cut, r.cell.length), []).append(r)
    return groups


def partition_table(rows: Sequence[OutageRecord]) -> str:
    """One partition's rows; policy and budget once per group; the bound only if budgeted."""
    budgeted = any(r.cell.budget for r in rows)
    columns = [c for c in COLUMNS if c is not BOUND or budgeted]
    starts = [k == 0 or _group(rows[k - 1]) != _group(r) for k, r in enumerate(rows)]
    grouped = [_once_per_group(c) for c in columns]
    return table(list(zip(rows, starts, strict=True)), grouped)


def _once_per_group(column: Column[OutageRecord]) -> Column[tuple[OutageRecord, bool]]:
    """``column`` over (record, first of its group): a group column blank after the first."""

    def value(row: tuple[OutageRecord, bool]) -> object:
        record, first = row
        return column.value(record) if first or column not in GROUP else ""

    return Column(column.header, value)


def _group(r: OutageRecord) -> tuple[str, bool]:
    return r.cell.policy, r.cell.budget


def render(records: Sequence[OutageRecord], env: Environment) -> str:
    p = records[0].setup
    header = (
        f"{p.clients} clients, each starting a deposit or withdrawal every "
        f"{timeout_text(p.interval)} at a seeded phase (seed {p.seed}); the partition "
        f"starts at {timeout_text(p.partition_at)}, the load goes on for "
        f"{timeout_text(p.after)} after the heal. Retries: timeout {timeout_text(p.timeout)}, "
        f"base {timeout_text(p.base)}, cap {timeout_text(p.cap)}, at most {p.max_attempts} "
        f"attempts; at-most-once reply cache retention {timeout_text(p.retention)}. "
        f"Python {env['python']}, {env['cpus']} CPUs."
    )
    parts = [header]
    for (transport, cut, length), rows in _groups(records).items():
        caption = f"{transport}: {cut.value} cut for {timeout_text(length)} ({rows[0].faults})"
        parts.append(section(caption, partition_table(rows)))
    return "\n\n".join(parts)


#: One line style per policy (in ``POLICY_NAMES`` order): equal loads, as
#: with a budget, draw dashes over a solid line instead of hiding it.
STYLES = ("-", "--", "-.", "-", "--", "-.")


def _partition_lines(r: OutageRecord, top: float) -> Series:
    """Dotted vertical lines where the partition starts and heals (a NaN breaks the line)."""
    start = r.setup.partition_at
    heal = start + r.cell.length
    nan = float("nan")
    xs, ys = [start, start, nan, heal, heal], [0, top, nan, 0, top]
    return Series("cut / heal", xs, ys, ":", color="black", dodge=False)


def plot(name: str, records: Sequence[OutageRecord]) -> Plot:
    """Server load around the main partition, one line per policy; a row per transport,
    a panel without and one with a budget."""
    main = [
        r for r in records if r.cell.semantics is LOAD_SEMANTICS and r.cell.cut is not Cut.REPLIES
    ]
    if not main:
        main = list(records)
    rows = []
    for transport in dict.fromkeys(r.cell.transport for r in main):
        panels = []
        for budget in (False, True):
            cells = {
                r.cell.policy: r
                for r in main
                if r.cell.transport == transport and r.cell.budget == budget
            }
            series = [
                Series(policy, [k * WINDOW for k in range(len(r.load))], list(r.load), style)
                for policy, style in zip(POLICY_NAMES, STYLES, strict=True)
                if (r := cells.get(policy)) is not None
            ]
            if not series:
                continue
            top = max(max(r.load, default=0) for r in cells.values())
            series.append(_partition_lines(next(iter(cells.values())), top))
            title = (
                f"{transport}, {LOAD_SEMANTICS.value}, {'with' if budget else 'no'} retry budget"
            )
            ylabel = f"server arrivals per {WINDOW * 1000:g} ms"
            panels.append(Panel(title, "time (s)", ylabel, series, grid=True))
        rows.append(panels)
    columns = max(len(row) for row in rows)
    return Plot(rows, (7.5 * columns, 4.2 * len(rows)), f"{name}: server load around the partition")
