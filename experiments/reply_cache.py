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
in-progress retries).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from experiments.audit import audit
from experiments.cli import Progress, environment
from experiments.report import Record, write_results
from experiments.runner import SCRYPT_N, SESSION_TTL
from experiments.workload import open_accounts, plan_operations, sim_plans
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


@dataclass(frozen=True)
class CacheCell:
    sweep: str  # which knob this row turns: capacity, retention or service
    semantics: Semantics
    capacity: int
    retention: float  # seconds
    service_time: float  # seconds
    loss: float


def cells(quick: bool) -> list[CacheCell]:
    amo, alo = Semantics.AT_MOST_ONCE, Semantics.AT_LEAST_ONCE
    capacities = [8, 64, 512, 4096] if quick else [8, 64, 256, 1024, 4096, 16384]
    retentions = [0.01, 0.06, 1.0] if quick else [0.005, 0.02, 0.06, 0.12, 0.25, 1.0]
    services = [0.0, 0.06, 0.3] if quick else [0.0, 0.03, 0.06, 0.12, 0.2, 0.3]
    return (
        [CacheCell("capacity", amo, c, FOREVER, 0.0, 0.2) for c in capacities]
        + [CacheCell("retention", amo, UNBOUNDED, r, 0.0, 0.2) for r in retentions]
        + [CacheCell("service", sem, UNBOUNDED, FOREVER, t, 0.0)
           for sem in (amo, alo) for t in services]
    )  # fmt: skip


def run(cell: CacheCell, ops: int, clients: int, seed: int) -> Record:
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
    return {
        **asdict(cell),
        "semantics": cell.semantics.value,
        "clients": clients,
        "seed": seed,
        **asdict(outcome),
        "cache_hits": counters.get("reply_cache_hits", 0),
        "dropped_in_progress": counters.get("dropped_in_progress", 0),
        "evictions": cache.evictions if cache is not None else 0,
    }


def _knob(rec: Record) -> str:
    sweep = rec["sweep"]
    if sweep == "capacity":
        return str(rec["capacity"])
    seconds = rec["retention"] if sweep == "retention" else rec["service_time"]
    return f"{seconds * 1000:g} ms"


def render(records: Sequence[Record], env: dict[str, Any]) -> str:
    r = records[0]
    header = (
        f"At-most-once reply cache on the simulator: {r['ops']} ops x {r['clients']} clients "
        f"per cell, seed {r['seed']}, policy fixed(timeout={TIMEOUT * 1000:g}ms), "
        f"{ATTEMPTS} attempts; capacity and retention rows lose 20% of messages in each "
        f"direction, service rows none. Python {env['python']}, {env['cpus']} CPUs; "
        "latencies are virtual time."
    )
    headers = [
        "sweep",
        "value",
        "semantics",
        "ok",
        "unknown",
        "duplicated",
        "phantom",
        "lost",
        "attempts",
        "cache hits",
        "evicted",
        "dropped in progress",
        "p50 ms",
        "p99 ms",
    ]
    rows = [
        [rec["sweep"], _knob(rec), rec["semantics"], rec["ok"], rec["unknown"],
         rec["duplicated"], rec["phantom"], rec["lost"], rec["attempts"], rec["cache_hits"],
         rec["evictions"], rec["dropped_in_progress"], rec["p50_ms"], rec["p99_ms"]]
        for rec in records
    ]  # fmt: skip
    window = TIMEOUT * (ATTEMPTS - 1)
    note = (
        f"A retry can come up to timeout x (attempts - 1) = {window * 1000:g} ms after the "
        "execution it repeats: the cache must keep a reply that long, and hold every reply "
        "completed meanwhile. Here duplicates vanish from capacity "
        f"{_first_clean(records, 'capacity')} and retention "
        f"{_first_clean(records, 'retention')} on."
    )
    return f"## {header}\n\n{tabulate(rows, headers, floatfmt='.2f')}\n\n{note}"


def _first_clean(records: Sequence[Record], sweep: str) -> str:
    """The smallest knob value from which no larger value lets a duplicate in."""
    rows = [r for r in records if r["sweep"] == sweep]
    clean = "none of the values tried"
    for rec in reversed(rows):
        if rec["duplicated"]:
            break
        clean = _knob(rec)
    return clean


def plot(out: Path, name: str, records: Sequence[Record]) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, sweep, key, scale in zip(
        axes, ("capacity", "retention", "service"), ("capacity", "retention", "service_time"),
        (1, 1000, 1000), strict=True,
    ):  # fmt: skip
        for semantics in ("at-most-once", "at-least-once"):
            rows = [r for r in records if r["sweep"] == sweep and r["semantics"] == semantics]
            if rows:
                ax.plot([r[key] * scale for r in rows], [r["duplicated"] for r in rows], "o-",
                        label=f"{semantics} duplicated")  # fmt: skip
                if sweep == "service":
                    ax.plot([r[key] * scale for r in rows], [r["unknown"] for r in rows], "s--",
                            label=f"{semantics} unknown")  # fmt: skip
        unit = "entries" if sweep == "capacity" else "ms"
        ax.set(title=sweep, xlabel=f"{sweep} ({unit})", ylabel="operations")
        if sweep != "service":
            ax.set_xscale("log")
        ax.legend(fontsize=8)
    fig.suptitle(f"{name}: duplicates let in by the reply cache (timeout {TIMEOUT * 1000:g} ms)")
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reply_cache",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ops", type=int, default=800)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--name", default="reply_cache")
    parser.add_argument("--quick", action="store_true", help="fewer cells and ops")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)  # fmt: skip
    if args.ops < 1 or args.clients < 1:
        print("error: --ops and --clients must be at least 1", file=sys.stderr)
        return 2
    if args.quick:
        args.ops = min(args.ops, 200)
    todo = cells(args.quick)
    progress = Progress(len(todo), enabled=not args.no_progress)
    records = []
    for cell in todo:
        records.append(run(cell, args.ops, min(args.clients, args.ops), args.seed))
        progress.step(f"{cell.sweep} {cell.semantics.value}")
    env = environment()
    print(render(records, env))
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    written = write_results(args.out, args.name, records, params, env,
                            render_tables=render, plotter=plot)  # fmt: skip
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
