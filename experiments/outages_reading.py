"""The reading of an outages run: one sentence per literature claim, from the run's numbers.

The four claims the experiment reproduces (experiments/ANALYSIS.md holds
them with their sources and why): without jitter the clients retry together
and the peak after the heal is clearly above full jitter's (per transport);
a reply-only partition applies what the clients report unknown (per
transport); the retry budget keeps amplification within the bound its
configured tokens and ratio allow; at-most-once duplicates once a partition
outlasts the reply cache's retention while exactly-once stays at zero. A
claim the run has no cells for is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.outages_cell import BUDGET_RATIO, BUDGET_TOKENS, OutageRecord
from experiments.retries_reading import timeout_text
from transports.faults import Cut
from transports.retry import EXPO, EXPO_FULL, FIXED
from transports.semantics import Semantics

#: The semantics whose load the plot and the jitter reading use: it retries,
#: and never executes twice, so the load is the retry policy's alone.
LOAD_SEMANTICS = Semantics.EXACTLY_ONCE
#: "Clearly above": a peak at least this many times another. The busiest window
#: of the steady load alone is well above its mean (the maybe rows' peak/steady),
#: so a smaller margin could be noise.
CLEARLY = 1.5


def reading_text(records: Sequence[OutageRecord]) -> str:
    """The reading as a Markdown list (empty when the run measured no claim)."""
    return "\n".join(f"- {line}" for line in reading(records))


def reading(records: Sequence[OutageRecord]) -> list[str]:
    """One sentence per claim the run measured (jitter and reply-only per transport)."""
    transports = list(dict.fromkeys(r.cell.transport for r in records))
    lines = [
        line
        for t in transports
        for check in (jitter, reply_only)
        if (line := check([r for r in records if r.cell.transport == t]))
    ]
    return lines + [line for line in (budget(records), retention(records)) if line]


def jitter(records: Sequence[OutageRecord]) -> str | None:
    """Peak after the heal of fixed and expo against expo-full (exactly-once, no budget)."""
    main = [r for r in records if r.cell.cut is Cut.BOTH and not r.cell.budget]
    peaks = {r.cell.policy: r for r in main if r.cell.semantics is LOAD_SEMANTICS}
    if not {FIXED, EXPO, EXPO_FULL} <= peaks.keys():
        return None
    fixed, expo, full = peaks[FIXED], peaks[EXPO], peaks[EXPO_FULL]
    holds = min(fixed.peak, expo.peak) >= CLEARLY * full.peak
    verdict = (
        f"both no-jitter peaks are at least {CLEARLY:g}x full jitter's: the claim holds"
        if holds
        else f"the no-jitter peaks are not both {CLEARLY:g}x full jitter's: the claim "
        "does not hold here"
    )
    return (
        f"Jitter ({fixed.cell.transport}, {LOAD_SEMANTICS.value}, no budget, "
        f"{_length(fixed)} partition): the busiest 10 ms window after the heal held "
        f"{fixed.peak} arrivals under fixed and {expo.peak} under expo, against {full.peak} "
        f"under expo-full ({fixed.peak_ratio:.1f}x, {expo.peak_ratio:.1f}x and "
        f"{full.peak_ratio:.1f}x the steady load); {verdict}. Attempts: fixed "
        f"{fixed.audit.attempts}, expo {expo.audit.attempts}, expo-full {full.audit.attempts}."
    )


def reply_only(records: Sequence[OutageRecord]) -> str | None:
    """Unknown against phantom in the longest reply-only partition, per retrying semantics."""
    cut = [r for r in records if r.cell.cut is Cut.REPLIES and r.cell.semantics.retries]
    if not cut:
        return None
    longest = max(r.cell.length for r in cut)
    rows = [r for r in cut if r.cell.length == longest]
    items = ", ".join(
        f"{r.cell.semantics.value} {r.audit.unknown} unknown / {r.audit.phantom} phantom"
        for r in rows
    )
    applied = sum(r.audit.phantom for r in rows)
    unknown = sum(r.audit.unknown for r in rows)
    return (
        f"Reply-only ({rows[0].cell.transport}, {_length(rows[0])}): {items}; "
        f"{applied} of the {unknown} operations the clients report unknown were applied."
    )


def budget(records: Sequence[OutageRecord]) -> str | None:
    """The most attempts per operation with a budget, against its bound and without one."""
    capped = [r for r in records if r.cell.budget and r.cell.semantics.retries]
    if not capped:
        return None
    worst = max(capped, key=lambda r: r.amplification)
    within = all(r.budget_bound is not None and r.amplification <= r.budget_bound for r in capped)
    free = [r for r in records if not r.cell.budget and r.cell.semantics.retries]
    most = max(free, key=lambda r: r.amplification) if free else None
    unbudgeted = (
        "" if most is None else f"; without one up to {most.amplification:.2f} ({most.cell.policy})"
    )
    return (
        f"Retry budget ({BUDGET_TOKENS:g} tokens, ratio {BUDGET_RATIO:g} per client): at most "
        f"{worst.amplification:.2f} attempts per operation with it ({worst.cell.policy}, "
        f"{worst.cell.semantics.value}, {worst.cell.transport}; its bound "
        f"{worst.budget_bound:.2f}){unbudgeted}. Every budgeted cell within its bound: "
        f"{'yes' if within else 'NO'}."
    )


def retention(records: Sequence[OutageRecord]) -> str | None:
    """At-most-once duplicates per reply-only partition length; exactly-once's in all."""
    amo = [r for r in records if r.cell.semantics is Semantics.AT_MOST_ONCE]
    if not amo:
        return None
    eo = [r for r in records if r.cell.semantics is Semantics.EXACTLY_ONCE]
    items = "".join(
        f"{r.audit.duplicated} in the {_length(r)} reply-only partition ({r.cell.transport}, "
        f"{r.cell.policy}{', budget' if r.cell.budget else ''}), "
        for r in amo
        if r.cell.cut is Cut.REPLIES
    )
    eo_text = (
        f"; exactly-once duplicated {sum(r.audit.duplicated for r in eo)} over {len(eo)} cells"
        if eo
        else ""
    )
    return (
        f"Retention ({timeout_text(amo[0].setup.retention)} at-most-once reply cache): "
        f"at-most-once duplicated {items}{sum(r.audit.duplicated for r in amo)} in all its "
        f"{len(amo)} cells{eo_text}."
    )


def _length(r: OutageRecord) -> str:
    return timeout_text(r.cell.length)
