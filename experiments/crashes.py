"""``python -m experiments.crashes``: server crashes x call semantics, simulated and real.

Role: show what a server crash does to each semantics' promise, on the
simulator and on real TCP and UDP servers whose process really dies. Tables
carry the audit columns of ``experiments.report`` plus the crash rate and the
number of crashes; the records go to results/ as JSON, CSV and Markdown.

Simulator (``--transports sim``): every cell is an ``experiments.runner`` sim
cell whose fault spec carries ``crash=c``: each request arrival crashes the
server with probability ``c``, half the time on arrival (before apply) and
half the time after the ledger change committed and before the reply left
(see ``transports.sim``). A crash empties the at-most-once reply cache; the
SQLite ledger and its idempotency keys survive; the restart is instantaneous.

Prediction (sim, no other fault, no loss): an attempt's reply is lost exactly
when the server crashes after applying it, with probability ``r = c / 2``, and
every crash also empties the reply cache, so at-most-once retries re-execute
just as at-least-once ones do. That is ``experiments.analytic.predict`` with
request loss 0 and reply loss ``r``, with at-most-once predicted as
at-least-once. Cells with other faults get no prediction.

Real servers (``--transports tcp,udp``): ``python -m services serve bank``
runs under ``experiments.supervisor`` on a fixed port and ledger file with
``crash=c``: at a fraction ``c`` of the deposit and withdrawal attempts it
executes (a seeded draw per request id and attempt), the process SIGKILLs
itself at ``--crash-point`` (before apply, or after the commit and before the
reply leaves, or either 50/50). The supervisor checks
the ledger file's integrity while the process is dead, then restarts it.
Clients reconnect and retry with ``--real-policy``. Afterwards the ledger is
audited as in the retries experiment and three guarantees are checked:
``integrity_check`` ok after every crash and at the end (and every balance
reconciles with its ledger rows), no acknowledged operation lost, nothing
duplicated under exactly-once. A violation makes the exit status 1. Real
cells get no prediction: a crash also kills the requests other clients had in
flight, which the one-request model above does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tabulate import tabulate

from experiments.analytic import Prediction, agrees, predict
from experiments.audit import audit, percentile
from experiments.cli import Progress, choice, csv_list, environment, probability
from experiments.report import PREDICTED, Record, measured_vs_predicted, record, write_results
from experiments.runner import SCRYPT_N, SESSION_TTL, WORKERS, Cell, CellRun, run_cell, run_client
from experiments.supervisor import Crash, Supervisor, free_port
from experiments.workload import Operation, open_accounts, plan_operations
from services.cli import CRASH_POINTS, RANDOM_POINT
from services.ledger import Ledger
from transports.call import CallResult
from transports.endpoint import AFTER_APPLY, BEFORE_APPLY
from transports.faults import FaultSpec, FaultSpecError
from transports.retry import POLICY_NAMES, parse_policy
from transports.semantics import Semantics

SEMANTICS = tuple(s.value for s in Semantics)
TRANSPORTS = ("sim", "tcp", "udp")
DEFAULT_CRASH = "0,0.01,0.02,0.05,0.1,0.2"
DEFAULT_REAL_CRASH = "0.05,0.1"
# Rides out a restart (~0.2-0.4 s): a TCP client sees the refused connect at
# once and backs off 50, 100, 200, 400, 500 ms ...; a UDP one waits 250 ms
# per attempt. 10 attempts span more than 3 s either way.
DEFAULT_REAL_POLICY = "expo:timeout=250ms,base=50ms,cap=500ms"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.crashes",
        description="Measure duplicated, phantom and unknown bank operations when the server "
        "crashes (losing its reply cache, keeping its ledger), per call semantics, on the "
        "simulator and on real TCP/UDP server processes killed with SIGKILL and restarted.",
    )
    p.add_argument("--transports", type=csv_list(choice(TRANSPORTS)), default=",".join(TRANSPORTS))
    p.add_argument("--semantics", type=csv_list(choice(SEMANTICS)), default=",".join(SEMANTICS))
    p.add_argument(
        "--crash",
        type=csv_list(probability),
        default=DEFAULT_CRASH,
        help="sim: crash probability per request arrival (one cell per value)",
    )
    p.add_argument("--loss", type=probability, default=0.0, help="message loss, every cell")
    p.add_argument(
        "--faults",
        default="",
        metavar="SPEC",
        help="other faults for every cell, e.g. 'dup=0.02,delay=1ms' (no crash= or loss=)",
    )
    p.add_argument("--ops", type=int, default=400, help="sim: logical operations per cell")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per cell")
    p.add_argument("--max-attempts", type=int, default=5, help="sim")
    p.add_argument(
        "--policy",
        default="fixed:timeout=100ms",
        metavar="NAME[:k=v,...]",
        help=f"sim: retry policy, one of {', '.join(POLICY_NAMES)}, with optional timeout=, "
        "base=, cap=",
    )
    real = p.add_argument_group("real servers (tcp, udp)")
    real.add_argument(
        "--real-crash",
        type=csv_list(probability),
        default=DEFAULT_REAL_CRASH,
        help="crash probability per executed deposit/withdrawal (one cell per value)",
    )
    real.add_argument("--real-ops", type=int, default=100, help="logical operations per cell")
    real.add_argument("--real-policy", default=DEFAULT_REAL_POLICY, metavar="NAME[:k=v,...]")
    real.add_argument("--real-max-attempts", type=int, default=10)
    real.add_argument(
        "--crash-point",
        choices=CRASH_POINTS,
        default=RANDOM_POINT,
        help="where the server dies (random: 50/50; the sim always draws 50/50)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--name", default="crashes", help="base name of the result files")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer ops and rates")
    p.add_argument("--no-progress", action="store_true")
    return p


@dataclass(frozen=True)
class RealCell:
    """A cell on a real server process: the runner's cell plus where it crashes."""

    cell: Cell
    crash_point: str


def _base_faults(args: argparse.Namespace) -> FaultSpec:
    if min(args.ops, args.real_ops, args.clients, args.max_attempts, args.real_max_attempts) < 1:
        raise ValueError("operation, client and attempt counts must be at least 1")
    base = FaultSpec.parse(args.faults)
    if base.crash or base.loss:
        raise ValueError("give crash rates with --crash and loss with --loss, not in --faults")
    return dataclasses.replace(base, loss=args.loss)


def _cells(
    args: argparse.Namespace,
    transport: str,
    rates: Sequence[float],
    policy: str,
    attempts: int,
    ops: int,
) -> list[Cell]:
    base = _base_faults(args)
    retry = parse_policy(policy)
    clients = min(args.clients, ops)
    return [
        Cell(
            transport,
            Semantics(s),
            dataclasses.replace(base, crash=c),
            retry,
            attempts,
            ops,
            clients,
            args.seed,
        )
        for s in args.semantics
        for c in rates
    ]


def cells_from(args: argparse.Namespace) -> list[Cell]:
    """The simulator cells (none unless ``sim`` is among ``--transports``)."""
    _base_faults(args)  # validate whichever cells run
    if "sim" not in args.transports:
        return []
    return _cells(args, "sim", args.crash, args.policy, args.max_attempts, args.ops)


def real_cells_from(args: argparse.Namespace) -> list[RealCell]:
    """The real-server cells: transports x semantics x ``--real-crash``."""
    return [
        RealCell(cell, args.crash_point)
        for transport in args.transports
        if transport != "sim"
        for cell in _cells(
            args,
            transport,
            args.real_crash,
            args.real_policy,
            args.real_max_attempts,
            args.real_ops,
        )
    ]


# --- real servers -------------------------------------------------------------


@dataclass(frozen=True)
class RealRun:
    """A real cell's audit plus what happened to the server process."""

    run: CellRun
    crash_point: str
    crashes: tuple[Crash, ...]  # as the dying servers reported them
    restarts: int
    startup_seconds: float
    restart_seconds: tuple[float, ...]  # death noticed to listening again, per restart
    integrity: tuple[str, ...]  # integrity_check after every crash, then at the end
    unreconciled: tuple[int, ...]  # accounts whose balance disagrees with their rows
    applications: dict[str, int]  # request id -> ledger rows it produced
    outcomes: dict[str, str]  # request id -> what its client was told (ok, failed, unknown)
    exit_code: int | None  # of the last incarnation, stopped with SIGTERM (0 = clean)
    error: str | None  # why supervision stopped early, if it did

    @property
    def violations(self) -> list[str]:
        """The broken guarantees, as short sentences (empty when all hold)."""
        found = [f"integrity_check: {r}" for r in self.integrity if r != "ok"]
        if self.unreconciled:
            found.append(f"balances disagree with ledger rows: accounts {self.unreconciled}")
        if self.run.audit.lost:
            found.append(f"{self.run.audit.lost} acknowledged operations lost")
        if self.run.cell.semantics is Semantics.EXACTLY_ONCE and self.run.audit.duplicated:
            found.append(f"exactly-once duplicated {self.run.audit.duplicated} operations")
        if self.error:
            found.append(f"supervisor: {self.error}")
        return found


def serve_args(real: RealCell, db: Path) -> list[str]:
    """``python -m services serve`` arguments (the supervisor adds the port)."""
    cell = real.cell
    # The server gets only the crash and application faults; link faults act
    # on the clients' links, both directions, as in the retries experiment.
    server_faults = FaultSpec(crash=cell.faults.crash, app_fail=cell.faults.app_fail)
    argv = ["bank", "--transport", cell.transport, "--db", str(db), "--seed", str(cell.seed)]
    argv += ["--semantics", cell.semantics.value, "--faults", server_faults.to_spec()]
    return [*argv, "--crash-point", real.crash_point, "--threads", str(WORKERS)]


def run_real_cell(real: RealCell, workdir: Path | None = None) -> RealRun:
    """Run ``real`` against a supervised server process on a fresh ledger file."""
    cell = real.cell
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = Path(tmp) / "ledger.sqlite3"
        plans = plan_operations(cell.seed, cell.clients, cell.ops)
        # Accounts and sessions go straight into the file before any server
        # runs. Sessions live in SQLite, so they survive every restart, and
        # the servers' event-loop clock is the same system-wide monotonic one.
        with Ledger(str(db), scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL) as ledger:
            tokens = open_accounts(ledger, cell.clients, now=time.monotonic())
            opening = ledger.total_balance()
        supervisor = Supervisor(serve_args(real, db), port=free_port(), log_dir=Path(tmp), db=db)
        with supervisor:
            results = asyncio.run(_run_clients(cell, supervisor.port, plans, tokens))
            exit_code = supervisor.stop()
        with Ledger(str(db), scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL) as ledger:
            integrity = [*supervisor.integrity, ledger.integrity_check()]
            unreconciled = ledger.reconcile()
            applications = ledger.applications()
            operations = [op for plan in plans for op in plan]
            outcome = audit(operations, results, applications, ledger.total_balance(), opening)
        crashes = supervisor.crashes()
    run = CellRun(cell, outcome, time.perf_counter() - started, {"crashes": len(crashes)})
    return RealRun(
        run=run,
        crash_point=real.crash_point,
        crashes=tuple(crashes),
        restarts=supervisor.restarts,
        startup_seconds=supervisor.startup_seconds,
        restart_seconds=tuple(supervisor.restart_seconds),
        integrity=tuple(integrity),
        unreconciled=tuple(unreconciled),
        applications=applications,
        outcomes={r.request.id: r.outcome.value for r in results},
        exit_code=exit_code,
        error=supervisor.error,
    )


async def _run_clients(
    cell: Cell, port: int, plans: list[list[Operation]], tokens: list[str]
) -> list[CallResult]:
    """The retries experiment's clients; they never see the crash fault itself."""
    client_cell = dataclasses.replace(
        cell, faults=dataclasses.replace(cell.faults, crash=0.0, app_fail=0.0)
    )
    per_client = await asyncio.gather(
        *(
            run_client(client_cell, index, port, plan, token)
            for index, (plan, token) in enumerate(zip(plans, tokens, strict=True))
        )
    )
    return [result for client in per_client for result in client]


def real_record(real: RealRun) -> Record:
    """``experiments.report.record`` plus the crash, restart and guarantee columns."""
    rec = record(real.run)
    restarts_ms = sorted(s * 1000 for s in real.restart_seconds)
    rec.update(
        crash=real.run.cell.faults.crash,
        crash_point=real.crash_point,
        crashes=len(real.crashes),
        crashes_before=sum(c.point == BEFORE_APPLY for c in real.crashes),
        crashes_after=sum(c.point == AFTER_APPLY for c in real.crashes),
        restarts=real.restarts,
        startup_ms=round(real.startup_seconds * 1000, 1),
        restart_p50_ms=round(statistics.median(restarts_ms), 1) if restarts_ms else None,
        restart_max_ms=round(restarts_ms[-1], 1) if restarts_ms else None,
        restart_ms=[round(ms, 1) for ms in restarts_ms],  # JSON only
        integrity_checks=len(real.integrity),
        integrity="ok" if all(r == "ok" for r in real.integrity) else "FAILED",
        unreconciled=len(real.unreconciled),
        server_exit=real.exit_code,
        violations="; ".join(real.violations),
    )
    return rec


# --- simulator ------------------------------------------------------------------


def prediction_for(cell: Cell) -> Prediction | None:
    """The crash-only model of the module docstring, or None when other faults are on."""
    if FaultSpec(crash=cell.faults.crash) != cell.faults:
        return None
    # A crash empties the reply cache: at-most-once retries run like at-least-once.
    model = cell.semantics
    if model is Semantics.AT_MOST_ONCE:
        model = Semantics.AT_LEAST_ONCE
    return predict(model.value, 0.0, cell.attempts_allowed, reply_loss=cell.faults.crash / 2)


def crash_record(run: CellRun) -> Record:
    """``experiments.report.record`` plus the crash rate, crash count and prediction."""
    rec = record(run)
    rec["crash"] = run.cell.faults.crash
    rec["crash_point"] = RANDOM_POINT
    rec["crashes"] = run.server_counters.get("crashes", 0)
    prediction = prediction_for(run.cell)
    if prediction is not None:
        ops = run.cell.ops
        rec["predicted"] = {k: round(v, 6) for k, v in prediction.to_dict().items()}
        rec["agrees"] = {k: agrees(rec[k], ops, getattr(prediction, k)) for k in PREDICTED}
    return rec


# --- tables -----------------------------------------------------------------------


# The audit columns of the retries experiment, in its order.
_AUDIT_KEYS = [
    "ok",
    "failed",
    "unknown",
    "duplicated",
    "phantom",
    "lost",
    "money_drift",
    "executions",
    "attempts",
    "p50_ms",
    "p99_ms",
    "max_ms",
]
_HEADER = {"money_drift": "drift", "executions": "execs"}


def _headers(keys: Sequence[str]) -> list[str]:
    return [_HEADER.get(k, k.replace("_ms", " ms").replace("_", " ")) for k in keys]


def _row(r: Record, keys: Sequence[str]) -> list[Any]:
    return [measured_vs_predicted(r, k) if k in PREDICTED else r[k] for k in keys]


def table(records: Sequence[Record]) -> str:
    """The simulator's table: measured / predicted counts."""
    keys = ["semantics", "crash", "crashes", *_AUDIT_KEYS]
    return tabulate([_row(r, keys) for r in records], _headers(keys), floatfmt=".2f")


def real_table(records: Sequence[Record]) -> str:
    """One real transport's table: crashes (after apply), restarts, audit, integrity."""
    keys = ["semantics", "crash", "crashes", "crashes_after", "restarts", *_AUDIT_KEYS]
    keys.append("integrity")
    return tabulate([_row(r, keys) for r in records], _headers(keys), floatfmt=".2f")


def side_by_side(records: Sequence[Record]) -> str:
    """TCP next to UDP, same semantics, crash rate and seed."""
    index = {(r["transport"], r["semantics"], r["crash"]): r for r in records}
    rows = []
    for r in records:
        o = index.get(("udp", r["semantics"], r["crash"]))
        if r["transport"] != "tcp" or o is None:
            continue
        rows.append(
            [r["semantics"], r["crash"]]
            + [
                x
                for key in ("crashes", "duplicated", "unknown", "attempts", "p99_ms", "max_ms")
                for x in (r[key], o[key])
            ]
        )
    headers = ["semantics", "crash"] + [
        f"{what} {t}"
        for what in ("crashes", "dup", "unknown", "attempts", "p99 ms", "max ms")
        for t in ("tcp", "udp")
    ]
    return tabulate(rows, headers, floatfmt=".2f")


def _environment(env: dict[str, Any]) -> str:
    return f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs"


def caption(records: Sequence[Record], env: dict[str, Any]) -> str:
    r = records[0]
    others = dataclasses.replace(FaultSpec.parse(r["faults"]), crash=0.0)
    return (
        f"sim: {r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, "
        f"crash probability per request arrival per row (half before apply, half after), "
        f"other faults [{others}], policy {r['policy']}, max attempts "
        f"{max(x['max_attempts'] for x in records)} (maybe: 1); {_environment(env)}. "
        "Cells read measured / predicted count ('!' = outside 4 sigma); latencies are "
        "virtual time; restarts are instantaneous."
    )


def real_caption(records: Sequence[Record], transport: str, env: dict[str, Any]) -> str:
    r = records[0]
    others = dataclasses.replace(FaultSpec.parse(r["faults"]), crash=0.0)
    restarts = sorted(ms for x in records for ms in x["restart_ms"])
    point = r["crash_point"]
    point = "50/50 before/after apply" if point == RANDOM_POINT else point
    return (
        f"{transport}: real server process (services serve bank) under a supervisor, "
        f"{r['ops']} ops x {r['clients']} clients per cell, seed {r['seed']}, crash "
        f"probability per executed deposit/withdrawal attempt per row, crash point "
        f"{point}, SIGKILL then restart on the "
        f"same ledger file: {len(restarts)} restarts, death to listening again p50 "
        f"{percentile(restarts, 50):.0f} ms, p99 {percentile(restarts, 99):.0f} ms, max "
        f"{restarts[-1] if restarts else 0:.0f} ms; other faults [{others}], policy "
        f"{r['policy']}, max attempts {max(x['max_attempts'] for x in records)} (maybe: 1); "
        f"{_environment(env)}. "
        "Wall-clock latencies; no prediction (a crash also kills other clients' in-flight "
        "requests); integrity = SQLite integrity_check after every crash and at the end."
    )


def guarantees(records: Sequence[Record]) -> str:
    """One paragraph: do integrity, no-loss and exactly-once hold in every real cell?"""
    checks = sum(r["integrity_checks"] for r in records)
    crashes = sum(r["crashes"] for r in records)
    broken = [r for r in records if r["violations"]]
    lines = [
        f"Guarantees over {len(records)} real cells, {crashes} crashes: "
        f"integrity_check ok in {checks - sum(r['integrity'] != 'ok' for r in records)}"
        f"/{checks} checks; acknowledged operations lost: {sum(r['lost'] for r in records)}; "
        "exactly-once duplicated: "
        f"{sum(r['duplicated'] for r in records if r['semantics'] == 'exactly-once')}; "
        "at-most-once duplicated (reply cache lost with the process): "
        f"{sum(r['duplicated'] for r in records if r['semantics'] == 'at-most-once')}."
    ]
    lines += [
        f"VIOLATION {r['transport']} {r['semantics']} crash={r['crash']}: {r['violations']}"
        for r in broken
    ]
    return "\n".join(lines)


def render(records: Sequence[Record], env: dict[str, Any]) -> str:
    """Sim table, a table per real transport, TCP vs UDP, then the guarantees."""
    parts = []
    sim = [r for r in records if r["transport"] == "sim"]
    if sim:
        parts.append(f"## {caption(sim, env)}\n\n{table(sim)}")
    real = [r for r in records if r["transport"] != "sim"]
    for transport in ("tcp", "udp"):
        group = [r for r in real if r["transport"] == transport]
        if group:
            parts.append(f"## {real_caption(group, transport, env)}\n\n{real_table(group)}")
    if {r["transport"] for r in real} == {"tcp", "udp"}:
        parts.append(f"## TCP vs UDP, same seed and crash draws\n\n{side_by_side(real)}")
    if real:
        parts.append(f"## {guarantees(real)}")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.ops, args.crash = min(args.ops, 100), [0.0, 0.05, 0.2]
        args.real_ops, args.real_crash = min(args.real_ops, 60), [0.1]
    try:
        cells = cells_from(args)
        real_cells = real_cells_from(args)
    except (ValueError, FaultSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = Progress(len(cells) + len(real_cells), enabled=not args.no_progress)
    records = []
    for cell in cells:
        records.append(crash_record(run_cell(cell)))
        progress.step(f"sim {cell.semantics.value} crash={cell.faults.crash}")
    violations = 0
    for real in real_cells:
        result = run_real_cell(real)
        violations += bool(result.violations)
        records.append(real_record(result))
        progress.step(
            f"{real.cell.transport} {real.cell.semantics.value} crash={real.cell.faults.crash}"
        )
    env = environment()
    print(render(records, env))
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    written = write_results(
        args.out, args.name, records, params, env, render_tables=render, plotter=None
    )
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
