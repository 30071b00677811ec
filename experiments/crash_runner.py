"""Run one real-server crash cell: a supervised bank server that SIGKILLs itself, then audit.

``run_real_cell`` prepares a fresh ledger file, runs the retries experiment's
clients against a server under ``experiments.supervisor`` (integrity checked
after every crash, then restarted on the same file), audits the ledger and
returns a ``RealRun`` whose ``violations`` name any broken guarantee.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.audit import audit
from experiments.runner import SCRYPT_N, SERVER_THREADS, SESSION_TTL, Cell, CellRun, run_client
from experiments.supervisor import Crash, Supervisor, free_port
from experiments.workload import Operation, open_accounts, plan_operations
from services.ledger import Ledger
from transports.call import CallResult
from transports.faults import FaultSpec
from transports.semantics import Semantics


@dataclass(frozen=True)
class RealCell:
    """A cell on a real server process: the runner's cell plus where it crashes."""

    cell: Cell
    crash_point: str


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
    server_faults = FaultSpec.of(server=cell.faults.server)
    argv = ["bank", "--transport", cell.transport, "--db", str(db), "--seed", str(cell.seed)]
    argv += ["--semantics", cell.semantics.value, "--faults", server_faults.to_spec()]
    return [*argv, "--crash-point", real.crash_point, "--threads", str(SERVER_THREADS)]


def run_real_cell(real: RealCell, workdir: Path | None = None) -> RealRun:
    """Run ``real`` against a supervised server process on a fresh ledger file."""
    cell = real.cell
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = Path(tmp) / "ledger.sqlite3"
        plans = plan_operations(cell.seed, cell.clients, cell.ops)
        # Accounts and sessions go straight into the file before any server
        # runs. Sessions live in SQLite, so they survive every restart, and
        # the servers store and check them in wall-clock time, as here.
        with _open_ledger(db) as ledger:
            tokens = open_accounts(ledger, cell.clients, now=time.time())
            opening = ledger.total_balance()
        supervisor = Supervisor(serve_args(real, db), port=free_port(), log_dir=Path(tmp), db=db)
        with supervisor:
            results = asyncio.run(_run_clients(cell, supervisor.port, plans, tokens))
            exit_code = supervisor.stop()
        with _open_ledger(db) as ledger:
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


def _open_ledger(db: Path) -> Ledger:
    # Opened before and after the servers run, with the runner's scrypt cost and session TTL.
    return Ledger(str(db), scrypt_n=SCRYPT_N, session_ttl=SESSION_TTL)
