"""Run one experiment cell on a real transport (tcp, udp) or the simulator (sim-tcp, sim-udp).

A cell is one combination of transport, semantics, fault model, retry policy
and attempt limit. The runner builds a fresh ledger and server, runs the
seeded workload through clients whose fault links are named ``client{i}``
(so one seed gives the same fault decisions on every transport), and audits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.audit import Audit, audit
from experiments.workload import (
    FIRST_ACCOUNT,
    Operation,
    open_accounts,
    plan_operations,
    sim_plans,
)
from services.bank import BankService
from services.ledger import Ledger
from services.programs.server_faults import app_failures
from transports.aio.client import RpcClient, open_channel, start_server
from transports.aio.driver import ServerContext
from transports.call import CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpec
from transports.retry import RetryPolicy, RtoEstimator
from transports.semantics import Semantics
from transports.sim import simulate

ALL_TRANSPORTS = ("tcp", "udp", "sim-tcp", "sim-udp")
#: The simulated transports and their mode: ``sim-tcp`` is the TCP-like stream
#: simulator (``simulate(stream=True)``), ``sim-udp`` the datagram one; ``sim``
#: is the datagram simulator under the name ``experiments.crashes`` uses.
SIMULATED = {"sim-tcp": True, "sim-udp": False, "sim": False}
SESSION_TTL = 10**9  # sessions outlive any cell; expiry is tested elsewhere
SCRYPT_N = 2**10  # PIN hashing cost: experiments open many ledgers
SERVER_THREADS = 4  # worker threads of the server (bank logins; see BankService)
#: At most this long for the server to finish what closing clients sent last.
DRAIN_SECONDS = 10.0


@dataclass(frozen=True)
class Cell:
    transport: str
    semantics: Semantics
    faults: FaultSpec
    policy: RetryPolicy
    max_attempts: int
    ops: int
    clients: int
    seed: int

    @property
    def attempts_allowed(self) -> int:
        return 1 if self.semantics is Semantics.MAYBE else self.max_attempts

    def retry_settings(self) -> RetrySettings:
        rto = RtoEstimator(initial=self.policy.timeout) if self.policy.adaptive else None
        return RetrySettings(self.policy, self.attempts_allowed, rto=rto)


@dataclass(frozen=True)
class CellRun:
    cell: Cell
    audit: Audit
    seconds: float  # wall-clock time of the cell
    server_counters: dict[str, int]


def run_cell(cell: Cell, workdir: Path | None = None) -> CellRun:
    """Run ``cell`` with a fresh ledger in ``workdir`` (a temporary dir by default)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        started = time.perf_counter()
        # The simulator runs on one thread and its server "crashes" keep the
        # ledger object: the in-memory ledger gives the same results, faster.
        simulated = cell.transport in SIMULATED
        ledger = Ledger(
            None if simulated else str(Path(tmp) / "ledger.sqlite3"),
            fault_point=app_failures(cell.faults.server, cell.seed),
            scrypt_n=SCRYPT_N,
            session_ttl=SESSION_TTL,
            in_memory=simulated,
        )
        try:
            plans = plan_operations(cell.seed, cell.clients, cell.ops)
            endpoint = ServerEndpoint(BankService(ledger), cell.semantics)
            if simulated:
                tokens = open_accounts(ledger, cell.clients, now=0.0)
                opening = ledger.total_balance()
                results = run_sim(cell, endpoint, plans, tokens)
            else:
                tokens = open_accounts(ledger, cell.clients, now=time.monotonic())
                opening = ledger.total_balance()
                results = asyncio.run(_run_real(cell, ledger, endpoint, plans, tokens))
            operations = [op for plan in plans for op in plan]
            outcome = audit(
                operations, results, ledger.applications(), ledger.total_balance(), opening
            )
        finally:
            ledger.close()
        return CellRun(cell, outcome, time.perf_counter() - started, dict(endpoint.counters))


def run_sim(
    cell: Cell,
    endpoint: ServerEndpoint,
    plans: list[list[Operation]],
    tokens: list[str],
) -> list[CallResult]:
    """The planned operations through the simulator (virtual time); one result each."""
    run = simulate(
        endpoint,
        sim_plans(plans, tokens),
        lambda _index: cell.retry_settings(),
        faults=cell.faults,
        seed=cell.seed,
        stream=SIMULATED[cell.transport],
    )
    return [result for client in run.calls for result in client]


async def _run_real(
    cell: Cell,
    ledger: Ledger,
    endpoint: ServerEndpoint,
    plans: list[list[Operation]],
    tokens: list[str],
) -> list[CallResult]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=SERVER_THREADS) as pool:
        # Start the worker threads and open the ledger's connection before
        # measuring: a cold first request could otherwise outlast the retry timeout.
        warm = [pool.submit(ledger.balance, FIRST_ACCOUNT) for _ in range(SERVER_THREADS)]
        concurrent.futures.wait(warm)
        server = await start_server(cell.transport, ServerContext(endpoint, pool=pool))
        origin = asyncio.get_running_loop().time()  # a partition counts from here, for all
        try:
            per_client = await asyncio.gather(
                *(
                    run_client(cell, index, server.port, plan, token, origin=origin)
                    for index, (plan, token) in enumerate(zip(plans, tokens, strict=True))
                )
            )
            # Each client closed after its fault links delivered what they held;
            # audit once the server has read and run all of it (the simulator,
            # likewise, lets the network drain).
            await server.drain(DRAIN_SECONDS)
        finally:
            await server.close()
    return [result for client in per_client for result in client]


async def run_client(
    cell: Cell,
    index: int,
    port: int,
    plan: list[Operation],
    token: str,
    *,
    host: str = "127.0.0.1",
    link_faults: bool = True,
    origin: float | None = None,
) -> list[CallResult]:
    """Client ``index`` performs its plan; ``link_faults=False`` when the kernel does them.

    ``origin``: the loop time a partition in ``cell.faults`` counts from.
    """
    name = f"client{index}"
    channel = open_channel(
        cell.transport,
        host,
        port,
        faults=cell.faults.link if link_faults else None,
        seed=cell.seed,
        name=name,
        origin=origin,
    )
    client = RpcClient(
        channel,
        cell.retry_settings(),
        rng=random.Random(f"{cell.seed}/{name}"),
        client_id=f"c{index}",
    )
    return await perform(client, plan, token)


async def perform(client: RpcClient, plan: list[Operation], token: str) -> list[CallResult]:
    """``plan``'s operations one at a time, then close (after the links deliver what they hold)."""
    results = []
    try:
        for op in plan:
            op_name, args = op.call_args(token)
            results.append(await client.call(op_name, args, request_id=op.request_id))
    finally:
        await client.close()
    return results
