"""The tables and plot of ``python -m experiments.retries`` (and its kernel backend).

One table per transport and timeout (measured / predicted counts, latency
percentiles), captioned with seed, fault model, policy, environment and the
model that predicts it; then TCP next to UDP per timeout (and sim-tcp next to
sim-udp); then deposits and withdrawals apart; the legend of the columns
(``LEGEND``); and the plot of duplicates and p99 latency against loss, one
row per timeout. The reading is ``experiments.retries_reading``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from experiments.audit import KindAudit
from experiments.cell_record import (
    AUDIT_COLUMNS,
    AUDIT_LEGEND,
    CELL_INTRO,
    SEMANTICS_MEANING,
    TCP_TRANSPORTS,
    BankRecord,
    drift_text,
)
from experiments.framework.experiment import Environment
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.tables import Column, legend, section, table
from experiments.retries_reading import PAIRS, timeout_text
from experiments.workload import ops_text
from transports.faults import FaultSpec, TcpRecovery

COLOURS = {"tcp": "tab:blue", "udp": "tab:orange", "sim-tcp": "tab:cyan", "sim-udp": "tab:red"}
LOSS_AXIS = "loss per message, each direction"
DODGE = 0.012  # of the loss axis per transport: equal points of two transports stay visible

TRANSPORT_COLUMNS: tuple[Column[BankRecord], ...] = (
    Column("semantics", lambda r: r.semantics),
    Column("loss", lambda r: r.loss),
    *AUDIT_COLUMNS,
)

#: What each model assumes, for the captions (derivations in experiments/ANALYSIS.md).
UDP_MODEL = (
    "the analytic model (independent loss, a timeout above the round trip: a retry "
    "follows a lost message only)"
)
TCP_MODEL = (
    "the TCP model (the first attempt's round trip through TCP's handshake and "
    "retransmission schedule decides the call; it ignores head-of-line blocking "
    "between calls, so '!' at short timeouts measures that blocking)"
)


LEGEND = legend(
    CELL_INTRO,
    [
        ("semantics", SEMANTICS_MEANING),
        ("loss", "probability that a message is lost, each direction"),
        *AUDIT_LEGEND,
        ("dup X, unknown X, ... (side by side)", "that column of transport X"),
    ],
)


def transport_table(records: Sequence[BankRecord]) -> str:
    return table(records, TRANSPORT_COLUMNS)


def side_by_side_table(records: Sequence[BankRecord], left: str, right: str) -> str:
    """Matching cells (semantics, loss, timeout) of two transports next to each other."""
    index = {(r.transport, r.semantics, r.loss, r.timeout): r for r in records}
    pairs = [
        (r, index[(right, r.semantics, r.loss, r.timeout)])
        for r in records
        if r.transport == left and (right, r.semantics, r.loss, r.timeout) in index
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


def tcp_model(record: BankRecord) -> bool:
    """Whether the record's prediction (if any) is the TCP model's."""
    return (
        record.transport in TCP_TRANSPORTS
        and FaultSpec.parse(record.faults).tcp is TcpRecovery.RETRANSMIT
    )


def workload_text(r: BankRecord) -> str:
    """``200 operations per cell (deposits and withdrawals; 10 from each of 20 clients)``."""
    return ops_text(r.audit.ops, r.clients)


def caption(records: Sequence[BankRecord], transport: str, env: Environment) -> str:
    r = records[0]
    attempts = max(x.max_attempts for x in records)
    model = TCP_MODEL if tcp_model(r) else UDP_MODEL
    missing = sorted({x.no_prediction for x in records if x.no_prediction})
    unpredicted = f" No prediction where {'; '.join(missing)}." if missing else ""
    others = FaultSpec.parse(r.faults).with_loss(0.0).to_spec() or "none"
    return (
        f"{workload_text(r)}, seed {r.seed}; loss as in each row, other faults [{others}]; "
        f"policy {r.policy}, at most {attempts} attempts (maybe: 1); Python "
        f"{env['python']} on {env['platform']}, {env['cpus']} CPUs. A count reads "
        f"`measured / predicted` ('!': outside 4 standard errors), predicted by {model}."
        f"{unpredicted}" + (" Latencies are virtual time." if transport.startswith("sim") else "")
    )


def groups(records: Iterable[BankRecord]) -> dict[tuple[str, float], list[BankRecord]]:
    """The records by (transport, timeout), in the order they first appear."""
    found: dict[tuple[str, float], list[BankRecord]] = {}
    for r in records:
        found.setdefault((r.transport, r.timeout), []).append(r)
    return found


def render(records: Sequence[BankRecord], env: Environment, *, kernel: bool = False) -> str:
    """All tables, Markdown.

    Per transport pair (tcp/udp, then sim-tcp/sim-udp): one table per
    transport and timeout, then the two side by side per timeout; then
    deposits against withdrawals per timeout. ``kernel``: the kernel dropped
    the packets (not seeded), which the TCP-vs-UDP notes say.
    """
    by_group = groups(records)
    transports = list(dict.fromkeys(r.transport for r in records))
    timeouts = list(dict.fromkeys(r.timeout for r in records))
    parts: list[str] = []
    for pair in (*PAIRS, *((t,) for t in transports if not any(t in p for p in PAIRS))):
        for transport in pair:
            for timeout in timeouts:
                if (group := by_group.get((transport, timeout))) is not None:
                    title = f"{transport}, timeout {timeout_text(timeout)}"
                    note = caption(group, transport, env)
                    parts.append(section(title, transport_table(group), note))
        if len(pair) == 2 and all(t in transports for t in pair):
            parts += _side_by_side(records, pair, timeouts, kernel)
    for timeout in timeouts:
        lossy = [r for r in records if r.timeout == timeout and r.loss > 0]
        if lossy:
            parts.append(section(f"Deposits and withdrawals, timeout {timeout_text(timeout)}",
                                 kinds_table(lossy), KINDS_NOTE))  # fmt: skip
    return "\n\n".join(parts)


KINDS_NOTE = (
    "The cells with loss, each kind of operation on its own: `ok / failed / unknown` "
    "as the clients were told, operations applied twice or more, applied although the "
    "client saw failed or unknown (phantom), and the drift in ledger units with the part "
    "due to second executions. A duplicated deposit credits money nobody paid in; a "
    "duplicated withdrawal debits the customer twice."
)


def _kind_columns(name: str, kind: str) -> list[Column[BankRecord]]:
    def get(r: BankRecord) -> KindAudit | None:
        return r.audit.deposits if kind == "deposits" else r.audit.withdrawals

    def counts(r: BankRecord) -> str:
        k = get(r)
        return "?" if k is None else f"{k.ok} / {k.failed} / {k.unknown}"

    def of(field: str) -> Callable[[BankRecord], object]:
        return lambda r: "?" if (k := get(r)) is None else getattr(k, field)

    def drift(r: BankRecord) -> str:
        k = get(r)
        return "?" if k is None else drift_text(k.drift, k.drift_duplicated)

    return [
        Column(f"{name} ok / failed / unknown", counts),
        Column(f"{name} dup", of("duplicated")),
        Column(f"{name} phantom", of("phantom")),
        Column(f"{name} drift (of it dup)", drift),
    ]


def kinds_table(records: Sequence[BankRecord]) -> str:
    columns: list[Column[BankRecord]] = [
        Column("transport", lambda r: r.transport),
        Column("semantics", lambda r: r.semantics),
        Column("loss", lambda r: r.loss),
        *_kind_columns("deposits", "deposits"),
        *_kind_columns("withdrawals", "withdrawals"),
    ]
    return table(records, columns, disable_numparse=True)


def _side_by_side(
    records: Sequence[BankRecord], pair: tuple[str, ...], timeouts: list[float], kernel: bool
) -> list[str]:
    left, right = pair
    if left == "tcp":
        same = "kernel packet loss (not seeded)" if kernel else "the same seed and fault decisions"
    else:
        same = "the same seed and fault decisions, virtual time"
    sections = []
    for timeout in timeouts:
        cells = [r for r in records if r.timeout == timeout]
        heading = f"{left} vs {right}, timeout {timeout_text(timeout)}"
        note = f"Matching cells of both transports, {same}."
        sections.append(section(heading, side_by_side_table(cells, left, right), note))
    return sections


def plot(name: str, records: Sequence[BankRecord]) -> Plot:
    """Per timeout: duplicates and p99 latency against loss per transport, with predictions."""
    rows = []
    for timeout in dict.fromkeys(r.timeout for r in records):
        rows.append(_panels([r for r in records if r.timeout == timeout], timeout_text(timeout)))
    deduplicated = sum(
        r.audit.duplicated for r in records if r.semantics in ("at-most-once", "exactly-once")
    )
    title = (
        f"{name}: operations duplicated under at-most-once and exactly-once: {deduplicated}\n"
        "(measured points shifted sideways a little, so that equal ones stay visible)"
    )
    return Plot(rows, (13, 4.8 * len(rows)), title)


def _panels(records: Sequence[BankRecord], timeout: str) -> tuple[Panel, Panel]:
    duplicates: list[Series] = []
    latencies: list[Series] = []
    predicted: dict[str, dict[float, float]] = {}  # model -> loss -> duplicated fraction
    for (transport, semantics), group in _series(records).items():
        losses = [r.loss for r in group]
        colour = COLOURS.get(transport, "tab:gray")
        sim = transport.startswith("sim")  # dashed with rings: the real line shows through
        line_style = "--" if sim else "-"
        if semantics == "at-least-once":
            fraction = [r.audit.duplicated / r.audit.ops for r in group]
            duplicates.append(
                Series(
                    f"{transport} measured",
                    losses,
                    fraction,
                    "o" + line_style,
                    colour,
                    key=transport,
                    hollow=sim,
                )
            )
            model = "TCP model" if tcp_model(group[0]) else "UDP analytic"
            line = predicted.setdefault(model, {})
            line.update((r.loss, r.predicted.duplicated) for r in group if r.predicted)
        if semantics in ("at-least-once", "exactly-once"):
            marker = "o" if semantics == "at-least-once" else "s"
            p99 = [r.audit.p99_ms for r in group]
            latencies.append(
                Series(
                    f"{transport} {semantics}",
                    losses,
                    p99,
                    marker + line_style,
                    colour,
                    key=transport,
                    hollow=sim,
                )
            )
    for (model, line), style in zip(predicted.items(), ("x:", "+-."), strict=False):
        xs = sorted(line)
        duplicates.append(
            Series(f"{model} prediction", xs, [line[x] for x in xs], style, "black", dodge=False)
        )
    return (
        Panel(f"at-least-once, timeout {timeout}: operations applied twice or more", LOSS_AXIS,
              "fraction of operations", duplicates, dodge=DODGE),
        Panel(f"p99 latency of a logical operation, timeout {timeout} (sim: virtual time)",
              LOSS_AXIS, "ms (log scale)", latencies, ylog=True, dodge=DODGE),
    )  # fmt: skip


def _series(records: Sequence[BankRecord]) -> dict[tuple[str, str], list[BankRecord]]:
    series: dict[tuple[str, str], list[BankRecord]] = {}
    for r in records:
        series.setdefault((r.transport, r.semantics), []).append(r)
    return series
