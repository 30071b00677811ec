"""The tables and plot of ``python -m experiments.retries`` (and its kernel backend).

One table per transport (measured / predicted counts, latency percentiles),
captioned with seed, fault model, policy and environment; then TCP next to
UDP; and the plot of duplicates and p99 latency against loss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from experiments.cell_record import AUDIT_COLUMNS, BankRecord
from experiments.framework.experiment import Environment
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.tables import Column, section, table

COLOURS = {"tcp": "tab:blue", "udp": "tab:orange", "sim-tcp": "tab:cyan", "sim-udp": "tab:red"}
LOSS_AXIS = "loss probability per message, each direction"

TRANSPORT_COLUMNS: tuple[Column[BankRecord], ...] = (
    Column("semantics", lambda r: r.semantics),
    Column("loss", lambda r: r.loss),
    *AUDIT_COLUMNS,
)


def transport_table(records: Sequence[BankRecord]) -> str:
    return table(records, TRANSPORT_COLUMNS)


def side_by_side_table(records: Sequence[BankRecord], left: str, right: str) -> str:
    """Matching cells of two transports next to each other."""
    index = {(r.transport, r.semantics, r.loss): r for r in records}
    pairs = [
        (r, index[(right, r.semantics, r.loss)])
        for r in records
        if r.transport == left and (right, r.semantics, r.loss) in index
    ]
    columns: list[Column[tuple[BankRecord, BankRecord]]] = [
        Column("semantics", lambda p: p[0].semantics),
        Column("loss", lambda p: p[0].loss),
    ]
    for what, key in SIDE_BY_SIDE:
        columns += _pair_columns(what, key, left, right)
    return table(pairs, columns)


SIDE_BY_SIDE = (
    ("dup", "duplicated"), ("unknown", "unknown"), ("attempts", "attempts"),
    ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
)  # fmt: skip


def _pair_columns(
    what: str, key: str, left: str, right: str
) -> list[Column[tuple[BankRecord, BankRecord]]]:
    """The audit column ``key`` of the left, then of the right transport."""
    return [
        Column(f"{what} {left}", lambda p: getattr(p[0].audit, key)),
        Column(f"{what} {right}", lambda p: getattr(p[1].audit, key)),
    ]


def caption(records: Sequence[BankRecord], transport: str, env: Environment) -> str:
    r = records[0]
    attempts = max(x.max_attempts for x in records)
    return (
        f"{transport}: {r.audit.ops} ops x {r.clients} clients per cell, seed {r.seed}, "
        f"faults [{r.faults or 'none'}] with loss per row, policy {r.policy}, "
        f"max attempts {attempts} (maybe: 1); Python {env['python']} on {env['platform']}, "
        f"{env['cpus']} CPUs. Cells read measured / predicted count ('!' = outside 4 sigma)."
        + (" Latencies are virtual time." if transport.startswith("sim") else "")
    )


def by_transport(records: Iterable[BankRecord]) -> dict[str, list[BankRecord]]:
    groups: dict[str, list[BankRecord]] = {}
    for r in records:
        groups.setdefault(r.transport, []).append(r)
    return groups


def render(records: Sequence[BankRecord], env: Environment, *, kernel: bool = False) -> str:
    """All tables as plain text: one per transport, then TCP vs UDP.

    ``kernel``: the kernel dropped the packets (not seeded), which the TCP-vs-UDP
    heading says.
    """
    groups = by_transport(records)
    parts = [
        section(caption(group, transport, env), transport_table(group))
        for transport, group in groups.items()
    ]
    if "tcp" in groups and "udp" in groups:
        same = "kernel packet loss (not seeded)" if kernel else "same seed and fault decisions"
        parts.append(section(f"TCP vs UDP, {same}", side_by_side_table(records, "tcp", "udp")))
    return "\n\n".join(parts)


def plot(name: str, records: Sequence[BankRecord]) -> Plot:
    """Duplicates and p99 latency against loss per transport, with the prediction."""
    duplicates: list[Series] = []
    latencies: list[Series] = []
    predicted: dict[float, float] = {}
    for (transport, semantics), group in _series(records).items():
        losses = [r.loss for r in group]
        colour = COLOURS.get(transport, "tab:gray")
        if semantics == "at-least-once":
            fraction = [r.audit.duplicated / r.audit.ops for r in group]
            duplicates.append(Series(f"{transport} measured", losses, fraction, "o-", colour))
            predicted.update((r.loss, r.predicted.duplicated) for r in group if r.predicted)
        if semantics in ("at-least-once", "exactly-once"):
            style = "o-" if semantics == "at-least-once" else "s--"
            p99 = [r.audit.p99_ms for r in group]
            latencies.append(Series(f"{transport} {semantics}", losses, p99, style, colour))
    if predicted:
        xs = sorted(predicted)
        duplicates.append(Series("analytic prediction", xs, [predicted[x] for x in xs], "k:"))
    deduplicated = sum(
        r.audit.duplicated for r in records if r.semantics in ("at-most-once", "exactly-once")
    )
    panels = (
        Panel("at-least-once: operations applied twice or more", LOSS_AXIS,
              "fraction of operations", duplicates),
        Panel("p99 latency of a logical operation (sim: virtual time)", LOSS_AXIS,
              "ms (log scale)", latencies, ylog=True),
    )  # fmt: skip
    title = f"{name}: operations duplicated under at-most-once and exactly-once: {deduplicated}"
    return Plot([panels], (12, 4.5), title)


def _series(records: Sequence[BankRecord]) -> dict[tuple[str, str], list[BankRecord]]:
    series: dict[tuple[str, str], list[BankRecord]] = {}
    for r in records:
        series.setdefault((r.transport, r.semantics), []).append(r)
    return series
