"""Tables, reading and plot of ``experiments.outages``.

The tables list every cell; the reading checks, from this run's numbers, the
four claims of the literature the experiment reproduces (ANALYSIS.md holds
the claims, sources and why); the plot draws the server's load per 10 ms
window around the partition, one line per retry policy.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.framework.experiment import Environment
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.tables import Column, section, table
from experiments.outages_cell import WINDOW, OutageRecord
from transports.faults import Cut
from transports.retry import EXPO, EXPO_FULL, FIXED, POLICY_NAMES
from transports.semantics import Semantics

#: The semantics whose load the plot and the jitter reading use: it retries,
#: and never executes twice, so the load is the retry policy's alone.
LOAD_SEMANTICS = Semantics.EXACTLY_ONCE
#: "Clearly above": a peak at least this many times another. The busiest window
#: of the steady load alone is well above its mean (the maybe rows' peak/steady),
#: so a smaller margin could be noise.
CLEARLY = 1.5


def _bound(r: OutageRecord) -> str:
    return "" if r.budget_bound is None else f"{r.budget_bound:.2f}"


COLUMNS: tuple[Column[OutageRecord], ...] = (
    Column("policy", lambda r: r.cell.policy),
    Column("budget", lambda r: "yes" if r.cell.budget else "no"),
    Column("semantics", lambda r: r.cell.semantics.value),
    Column("ok", lambda r: r.audit.ok),
    Column("failed", lambda r: r.audit.failed),
    Column("unknown", lambda r: r.audit.unknown),
    Column("duplicated", lambda r: r.audit.duplicated),
    Column("phantom", lambda r: r.audit.phantom),
    Column("attempts", lambda r: r.audit.attempts),
    Column("attempts/op", lambda r: r.amplification),
    Column("budget bound", _bound),
    Column("steady /10ms", lambda r: r.steady),
    Column("peak /10ms", lambda r: r.peak),
    Column("peak/steady", lambda r: r.peak_ratio),
    Column("drain s", lambda r: r.drain_s),
    Column("p50 ms", lambda r: r.late_p50_ms),
    Column("p99 ms", lambda r: r.late_p99_ms),
    Column("max ms", lambda r: r.late_max_ms),
)


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"


def _groups(records: Sequence[OutageRecord]) -> dict[tuple[str, Cut, float], list[OutageRecord]]:
    groups: dict[tuple[str, Cut, float], list[OutageRecord]] = {}
    for r in records:
        groups.setdefault((r.cell.transport, r.cell.cut, r.cell.length), []).append(r)
    return groups


def render(records: Sequence[OutageRecord], env: Environment) -> str:
    p = records[0].setup
    header = (
        f"{p.clients} clients each start a deposit or withdrawal every "
        f"{_seconds(p.interval)} (steady offered load), seed {p.seed}; a partition "
        f"from {_seconds(p.partition_at)}, the load goes on {_seconds(p.after)} after the "
        f"heal. Policies: timeout {_seconds(p.timeout)}, base {_seconds(p.base)}, cap "
        f"{_seconds(p.cap)}, {p.max_attempts} attempts; budget: gRFC A6 throttling, "
        f"10 tokens, 0.1 per reply, per client. At-most-once reply cache retention "
        f"{_seconds(p.retention)}. Load: server arrivals per {WINDOW * 1000:g} ms window. "
        f"Latency: finish minus scheduled start (backlog included). sim-*: the simulator, "
        f"virtual time, an infinitely parallel server; udp, tcp: real loopback sockets, one "
        f"server process, wall-clock time. Python {env['python']}, {env['cpus']} CPUs."
    )
    parts = [header]
    for (transport, cut, length), rows in _groups(records).items():
        caption = f"{transport}: {cut.value} cut for {_seconds(length)} ({rows[0].faults})"
        parts.append(section(caption, table(rows, COLUMNS)))
    parts.append(section("Reading", "\n".join(f"- {line}" for line in reading(records))))
    return "\n\n".join(parts)


def reading(records: Sequence[OutageRecord]) -> list[str]:
    """One line per claim (per transport where it differs), computed from this run."""
    transports = list(dict.fromkeys(r.cell.transport for r in records))
    per_transport = [
        line
        for t in transports
        for line in (
            _jitter([r for r in records if r.cell.transport == t]),
            _reply_only([r for r in records if r.cell.transport == t]),
        )
    ]
    return [*per_transport, _budget(records), _retention(records)]


def _jitter(records: Sequence[OutageRecord]) -> str:
    transport = records[0].cell.transport
    main = [r for r in records if r.cell.cut is Cut.BOTH and not r.cell.budget]
    peaks = {r.cell.policy: r for r in main if r.cell.semantics is LOAD_SEMANTICS}
    if not {FIXED, EXPO, EXPO_FULL} <= peaks.keys():
        return f"jitter ({transport}): not measured (needs fixed, expo and expo-full, both cut)"
    full = peaks[EXPO_FULL]
    verdict = all(peaks[n].peak >= CLEARLY * full.peak for n in (FIXED, EXPO))
    return (
        f"jitter ({transport}, {LOAD_SEMANTICS.value}, no budget): peak after the "
        f"heal {peaks[FIXED].peak} (fixed) and {peaks[EXPO].peak} (expo) against "
        f"{full.peak} (expo-full) arrivals per window, i.e. {peaks[FIXED].peak_ratio:.1f}x, "
        f"{peaks[EXPO].peak_ratio:.1f}x and {full.peak_ratio:.1f}x the steady load; attempts "
        f"{peaks[FIXED].audit.attempts}, {peaks[EXPO].audit.attempts} and "
        f"{full.audit.attempts}: both no-jitter peaks at least {CLEARLY:g}x full jitter's: "
        f"{'yes' if verdict else 'NO'}"
    )


def _budget(records: Sequence[OutageRecord]) -> str:
    capped = [r for r in records if r.cell.budget and r.cell.semantics.retries]
    if not capped:
        return "budget: not measured (no cell with a budget)"
    worst = max(capped, key=lambda r: r.amplification)
    within = all(r.budget_bound is not None and r.amplification <= r.budget_bound for r in capped)
    free = [r for r in records if not r.cell.budget and r.cell.semantics.retries]
    most = max(free, key=lambda r: r.amplification) if free else None
    unbudgeted = (
        "" if most is None else f" (without: up to {most.amplification:.2f}, {most.cell.policy})"
    )
    return (
        f"budget: attempts per operation at most {worst.amplification:.2f} with a budget "
        f"({worst.cell.policy}, {worst.cell.semantics.value}; its bound "
        f"{_bound(worst)}){unbudgeted}; every budgeted cell within its bound: "
        f"{'yes' if within else 'NO'}"
    )


def _retention(records: Sequence[OutageRecord]) -> str:
    amo = [r for r in records if r.cell.semantics is Semantics.AT_MOST_ONCE]
    eo = [r for r in records if r.cell.semantics is Semantics.EXACTLY_ONCE]
    if not amo:
        return "retention: not measured (no at-most-once cell)"
    by_length = ", ".join(
        f"{_seconds(r.cell.length)} {r.cell.cut.value} {r.cell.policy}"
        f"{' budget' if r.cell.budget else ''}: {r.audit.duplicated}"
        for r in amo
        if r.cell.cut is Cut.REPLIES
    )
    eo_dups = sum(r.audit.duplicated for r in eo)
    return (
        f"retention: at-most-once duplicates per reply-only partition ({by_length}); "
        f"all at-most-once cells {sum(r.audit.duplicated for r in amo)}; exactly-once "
        f"duplicates over {len(eo)} cells: {eo_dups}"
    )


def _reply_only(records: Sequence[OutageRecord]) -> str:
    transport = records[0].cell.transport
    cut = [r for r in records if r.cell.cut is Cut.REPLIES and r.cell.semantics.retries]
    if not cut:
        return f"reply-only ({transport}): not measured (no reply-only partition)"
    longest = max(r.cell.length for r in cut)
    rows = [r for r in cut if r.cell.length == longest]
    items = ", ".join(
        f"{r.cell.semantics.value} {r.audit.unknown} unknown / {r.audit.phantom} phantom"
        for r in rows
    )
    return f"reply-only ({transport}, {_seconds(longest)}): {items}"


def plot(name: str, records: Sequence[OutageRecord]) -> Plot:
    """Server load around the partition, one line per policy; without and with a budget."""
    main = [
        r for r in records if r.cell.semantics is LOAD_SEMANTICS and r.cell.cut is not Cut.REPLIES
    ]
    if not main:
        main = list(records)
    transport = main[0].cell.transport
    panels = []
    for budget in (False, True):
        series = []
        for policy in POLICY_NAMES:
            key = (transport, policy, budget)
            r = next(
                (r for r in main if (r.cell.transport, r.cell.policy, r.cell.budget) == key), None
            )
            if r is None:
                continue
            xs = [k * WINDOW for k in range(len(r.load))]
            series.append(Series(policy, xs, list(r.load), "-"))
        if series:
            title = (
                f"{transport}, {LOAD_SEMANTICS.value}, {'with' if budget else 'no'} retry budget"
            )
            panels.append(
                Panel(
                    title,
                    "time (s)",
                    f"server arrivals per {WINDOW * 1000:g} ms",
                    series,
                    grid=True,
                )
            )
    return Plot([panels], (7 * len(panels), 4.5), f"{name}: server load around the partition")
