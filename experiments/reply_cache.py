"""``python -m experiments.reply_cache``: when an at-most-once reply cache lets duplicates in.

Three sweeps on the simulator, whose virtual time makes the windows exact:

``capacity``   entries the cache may hold. A retry finds its reply only if
               fewer than ``capacity`` other requests completed since: the
               cache must hold at least (request rate) x (retry window).
``retention``  how long a reply is kept. A retry arriving after it expired
               executes again; retention must outlast the retry window
               (timeout x attempts, plus backoff).
``service``    server processing time. Retries that overtake a slow server
               find their request in progress: at-most-once drops them,
               at-least-once executes every copy. Once processing outlasts
               timeout x attempts, even at-most-once clients give up
               (``unknown``) on operations that were in fact applied.

Each row is an audited cell: a fresh SQLite ledger, seeded clients, loss on
every message, and the endpoint's counters (cache hits, evictions, dropped
in-progress retries). Built on ``experiments.framework`` like
``experiments.retries``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from experiments.audit import Audit, audit
from experiments.cell_record import CELL_INTRO, SEMANTICS_MEANING
from experiments.framework.experiment import Environment, Experiment, run_experiment
from experiments.framework.options import add_output_options, config_from, experiment_parser
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.records import FLATTEN, Record
from experiments.framework.tables import Column, legend, section, table
from experiments.runner import SCRYPT_N, SESSION_TTL
from experiments.workload import open_accounts, ops_text, plan_operations, sim_plans
from services.bank import BankService
from services.ledger import Ledger
from transports.call import RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpec
from transports.retry import RetryPolicy
from transports.semantics import ReplyCache, Semantics
from transports.sim import simulate

TIMEOUT = 0.05  # fixed per-attempt timeout of every client, seconds
ATTEMPTS = 5
UNBOUNDED = 1 << 30  # "capacity large enough": never the limiting factor
FOREVER = 1e9  # "retention long enough"
SWEEPS = ("capacity", "retention", "service")
DESCRIPTION = """\
When an at-most-once reply cache lets duplicate bank operations back in. Three
sweeps on the simulator (virtual time, so the windows are exact):

  capacity   replies the cache may hold: a retry finds its reply only if the
             cache still holds it, so it must hold (request rate) x (retry window);
  retention  how long a reply is kept: it must outlast the retry window;
  service    the server's processing time: retries that overtake a slow server
             find their request in progress; once processing outlasts timeout x
             attempts, clients give up (unknown) on operations that were applied.
"""


@dataclass(frozen=True)
class CacheCell:
    sweep: str  # which knob this row turns: capacity, retention or service
    semantics: Semantics
    capacity: int
    retention: float  # seconds
    service_time: float  # seconds
    loss: float


@dataclass(frozen=True, kw_only=True)
class CacheRecord(Record):
    """One audited cell and the endpoint's reply-cache counters."""

    cell: CacheCell = field(metadata=FLATTEN)
    clients: int
    seed: int
    audit: Audit = field(metadata=FLATTEN)
    cache_hits: int
    dropped_in_progress: int
    evictions: int

    @property
    def knob(self) -> float:
        """The value this row's sweep turns (entries or seconds)."""
        sweep = self.cell.sweep
        if sweep == "capacity":
            return self.cell.capacity
        return self.cell.retention if sweep == "retention" else self.cell.service_time


@dataclass(frozen=True)
class ReplyCacheConfig:
    """The reply_cache command line, checked (``--quick`` applied)."""

    ops: int
    clients: int
    seed: int
    out: Path
    name: str
    quick: bool
    no_progress: bool


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser("experiments.reply_cache", DESCRIPTION)
    parser.add_argument(
        "--ops",
        type=int,
        default=800,
        metavar="N",
        help="deposits and withdrawals per cell, in total over its clients",
    )
    parser.add_argument(
        "--clients", type=int, default=16, metavar="N", help="concurrent clients per cell"
    )
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of every fault decision and workload")  # fmt: skip
    add_output_options(parser, "reply_cache", quick="fewer cells and ops")
    return parser


def config(args: argparse.Namespace) -> ReplyCacheConfig:
    if args.ops < 1 or args.clients < 1:
        raise ValueError("--ops and --clients must be at least 1")
    return config_from(ReplyCacheConfig, args, ops=min(args.ops, 200) if args.quick else args.ops)


def cells(cfg: ReplyCacheConfig) -> list[CacheCell]:
    amo, alo = Semantics.AT_MOST_ONCE, Semantics.AT_LEAST_ONCE
    quick = cfg.quick
    capacities = [8, 64, 512, 4096] if quick else [8, 64, 256, 1024, 4096, 16384]
    retentions = [0.01, 0.06, 1.0] if quick else [0.005, 0.02, 0.06, 0.12, 0.25, 1.0]
    services = [0.0, 0.06, 0.3] if quick else [0.0, 0.03, 0.06, 0.12, 0.2, 0.3]
    return (
        [CacheCell("capacity", amo, c, FOREVER, 0.0, 0.2) for c in capacities]
        + [CacheCell("retention", amo, UNBOUNDED, r, 0.0, 0.2) for r in retentions]
        + [CacheCell("service", sem, UNBOUNDED, FOREVER, t, 0.0)
           for sem in (amo, alo) for t in services]
    )  # fmt: skip


def run_config(cfg: ReplyCacheConfig, cell: CacheCell) -> CacheRecord:
    return run(cell, cfg.ops, min(cfg.clients, cfg.ops), cfg.seed)


def run(cell: CacheCell, ops: int, clients: int, seed: int) -> CacheRecord:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(
            str(Path(tmp) / "ledger.sqlite3"), scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL
        )
        try:
            plans = plan_operations(seed, clients, ops)
            tokens = open_accounts(ledger, clients, now=0.0)
            opening = ledger.total_balance()
            cache = None
            if cell.semantics is Semantics.AT_MOST_ONCE:
                cache = ReplyCache(capacity=cell.capacity, retention=cell.retention)
            endpoint = ServerEndpoint(BankService(ledger), cell.semantics, cache)
            policy = RetryPolicy.from_name("fixed", timeout=TIMEOUT)
            result = simulate(
                endpoint,
                sim_plans(plans, tokens),
                lambda _client: RetrySettings(policy, ATTEMPTS),
                faults=FaultSpec(loss=cell.loss),
                seed=seed,
                service_time=cell.service_time,
            )
            outcome = audit(
                [op for plan in plans for op in plan],
                [r for client in result.calls for r in client],
                ledger.applications(),
                ledger.total_balance(),
                opening,
            )
        finally:
            ledger.close()
    counters = endpoint.counters
    return CacheRecord(
        cell=cell,
        clients=clients,
        seed=seed,
        audit=outcome,
        cache_hits=counters.get("reply_cache_hits", 0),
        dropped_in_progress=counters.get("dropped_in_progress", 0),
        evictions=cache.evictions if cache is not None else 0,
    )


def _knob(rec: CacheRecord) -> str:
    if rec.cell.sweep == "capacity":
        return str(rec.cell.capacity)
    return f"{rec.knob * 1000:g} ms"


COLUMNS: tuple[Column[CacheRecord], ...] = (
    Column("sweep", lambda r: r.cell.sweep),
    Column("value", _knob),
    Column("semantics", lambda r: r.cell.semantics.value),
    Column("ok", lambda r: r.audit.ok),
    Column("unknown", lambda r: r.audit.unknown),
    Column("duplicated", lambda r: r.audit.duplicated),
    Column("phantom", lambda r: r.audit.phantom),
    Column("lost", lambda r: r.audit.lost),
    Column("attempts", lambda r: r.audit.attempts),
    Column("cache hits", lambda r: r.cache_hits),
    Column("evicted", lambda r: r.evictions),
    Column("dropped in progress", lambda r: r.dropped_in_progress),
    Column("p50 ms", lambda r: r.audit.p50_ms),
    Column("p99 ms", lambda r: r.audit.p99_ms),
)


def render(records: Sequence[CacheRecord], env: Environment) -> str:
    r = records[0]
    note = (
        f"The simulator; {ops_text(r.audit.ops, r.clients)}, seed {r.seed}; policy "
        f"fixed(timeout={TIMEOUT * 1000:g}ms), {ATTEMPTS} attempts; capacity and retention "
        f"rows lose 20% of messages in each direction, service rows none. Python "
        f"{env['python']}, {env['cpus']} CPUs; latencies are virtual time."
    )
    return section("At-most-once reply cache", table(records, COLUMNS), note)


def reading(records: Sequence[CacheRecord]) -> str:
    """Where duplicates vanish, from the run's own rows."""
    window = TIMEOUT * (ATTEMPTS - 1)
    return (
        f"A retry can come up to timeout x (attempts - 1) = {window * 1000:g} ms after the "
        "execution it repeats: the cache must keep a reply that long, and hold every reply "
        "completed meanwhile. Here duplicates vanish from capacity "
        f"{_first_clean(records, 'capacity')} and retention "
        f"{_first_clean(records, 'retention')} on."
    )


LEGEND = legend(
    CELL_INTRO,
    [
        ("sweep, value", "the knob the row turns: capacity (replies the cache may hold), "
         "retention (how long a reply is kept) or service (the server's processing time)"),
        ("semantics", SEMANTICS_MEANING),
        ("ok, unknown, duplicated, phantom, lost", "as in the retries experiment: told "
         "applied; no reply after the last attempt; applied twice or more; applied although "
         "the client saw unknown; told ok but never applied"),
        ("attempts", "messages the clients sent, in total"),
        ("cache hits", "repeats answered from the reply cache"),
        ("evicted", "replies dropped from a full cache"),
        ("dropped in progress", "repeats that arrived while their request was still running"),
        ("p50 / p99 ms", "latency of a logical operation, all attempts (virtual time)"),
    ],
)  # fmt: skip


def _first_clean(records: Sequence[CacheRecord], sweep: str) -> str:
    """The smallest knob value from which no larger value lets a duplicate in."""
    rows = [r for r in records if r.cell.sweep == sweep]
    clean = "none of the values tried"
    for rec in reversed(rows):
        if rec.audit.duplicated:
            break
        clean = _knob(rec)
    return clean


def plot(name: str, records: Sequence[CacheRecord]) -> Plot:
    """Duplicates (and, for a slow server, unknowns) against each sweep's knob."""
    panels = []
    for sweep in SWEEPS:
        scale = 1 if sweep == "capacity" else 1000
        series = []
        for semantics in ("at-most-once", "at-least-once"):
            rows = [
                r for r in records if (r.cell.sweep, r.cell.semantics.value) == (sweep, semantics)
            ]
            if not rows:
                continue
            xs = [r.knob * scale for r in rows]
            series.append(Series(f"{semantics} duplicated", xs, [r.audit.duplicated for r in rows]))
            if sweep == "service":
                unknown = [r.audit.unknown for r in rows]
                series.append(Series(f"{semantics} unknown", xs, unknown, "s--"))
        unit = "entries" if sweep == "capacity" else "ms"
        xlog = None if sweep == "service" else 10
        panels.append(Panel(sweep, f"{sweep} ({unit})", "operations", series, xlog=xlog))
    title = f"{name}: duplicates let in by the reply cache (timeout {TIMEOUT * 1000:g} ms)"
    return Plot([panels], (14, 4), title)


def label(cell: CacheCell) -> str:
    return f"{cell.sweep} {cell.semantics.value}"


REPLY_CACHE = Experiment(
    parser=build_parser,
    config=config,
    cells=cells,
    run=run_config,
    label=label,
    render=render,
    plot=plot,
    reading=reading,
    legend=LEGEND,
)


def main(argv: Sequence[str] | None = None) -> int:
    return run_experiment(REPLY_CACHE, argv)


if __name__ == "__main__":
    sys.exit(main())
