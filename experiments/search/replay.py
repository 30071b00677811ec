"""Replay one fault schedule over real TCP and UDP loopback sockets and in the simulator.

Role: show a counterexample happen. The clients' channels carry the
schedule's ``ScheduledLink``s through the drivers' ``Links`` (in place of the
seeded ``FaultLink``s), so message #k of each link meets the same action on
a real socket as in the simulator; TCP's links follow the stream rules (a
drop is retransmitted after the RTO, a duplicate is absorbed, nothing
overtakes), UDP's the datagram rules. Each replay runs on its own fresh copy
of the ledger and is audited the same way.

A crash is replayed as the simulator defines it (``transports.sim``): at
request arrival #k the server loses its volatile state (the at-most-once
reply cache; after apply, the reply being sent too) and goes on at once on
the same SQLite ledger and the same socket. A real process crash would also
reset TCP connections; ``python -m experiments.crashes`` kills real servers
with SIGKILL.

A real run follows the simulator only while its timers run on time (each
real run reports how late they ran), and, with two clients, only while their
requests reach the server in the simulator's order: clients that send at the
same instant race on real sockets, so a crash numbered by arrival may strike
the other client's request.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.runner import perform
from experiments.search.bank import (
    BankTemplate,
    Model,
    ScheduleRun,
    Workload,
    client_rng,
    run_in_sim,
    summarise,
)
from experiments.workload import Operation
from services.bank import BankService
from transports.admission import Peer
from transports.aio.client import RpcClient, start_server
from transports.aio.driver import ServerContext
from transports.aio.tcp import TcpChannel
from transports.aio.udp import UdpChannel
from transports.call import CallResult
from transports.endpoint import ServerEndpoint
from transports.links import Links
from transports.schedule import FaultSchedule
from transports.semantics import ReplyCache, Semantics
from transports.service import Service
from transports.sim import CrashPoint, CrashPolicy
from transports.wire import Request

HOST = "127.0.0.1"
DRAIN_SECONDS = 10.0  # at most this long for the server to run what closing clients sent
REPLAY_SECONDS = 120.0  # a whole replay, whatever the schedule
REPLAYS = ("sim-udp", "udp", "sim-tcp", "tcp")


class ScheduledCrashes(ServerEndpoint):
    """An endpoint that crashes at the request arrivals a ``CrashPolicy`` names.

    Arrivals are numbered 0, 1, ... over all clients, as in the simulator.
    The server executes each request inline (no worker pool), so no request is
    ever admitted but unfinished when a crash strikes.
    """

    def __init__(
        self,
        service: Service,
        semantics: Semantics,
        policy: CrashPolicy,
        reply_cache: ReplyCache | None = None,
    ) -> None:
        super().__init__(service, semantics, reply_cache)
        self.policy = policy
        self.arrivals = 0
        self.crashes: list[tuple[int, CrashPoint]] = []
        self._doomed: dict[int, tuple[Request, int]] = {}  # id(request) -> (request, arrival)

    def receive(
        self, data: bytes, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> Request | bytes | None:
        arrival, self.arrivals = self.arrivals, self.arrivals + 1
        point = self.policy(arrival)
        if point is CrashPoint.BEFORE_APPLY:
            self._crash(arrival, point)
        received = super().receive(data, now, budget, peer)
        if point is not CrashPoint.AFTER_APPLY:
            return received
        if isinstance(received, Request):
            self._doomed[id(received)] = (received, arrival)
            return received
        self._crash(arrival, point)  # whatever the server had to say is lost
        return None

    def complete(
        self, request: Request, now: float, budget: int | None = None, peer: Peer | None = None
    ) -> bytes | None:
        reply = super().complete(request, now, budget, peer)
        doomed = self._doomed.pop(id(request), None)
        if doomed is None:
            return reply
        self._crash(doomed[1], CrashPoint.AFTER_APPLY)  # committed; the reply is lost
        return None

    def _crash(self, arrival: int, point: CrashPoint) -> None:
        self.crashes.append((arrival, point))
        self.count("crashes")
        if self.reply_cache is not None:
            self.reply_cache.clear()


async def _client(
    channel: TcpChannel | UdpChannel,
    workload: Workload,
    index: int,
    plan: list[Operation],
    token: str,
    seed: int,
) -> list[CallResult]:
    settings = workload.retry_settings()
    rng = client_rng(seed, index)
    return await perform(RpcClient(channel, settings, rng=rng, client_id=f"c{index}"), plan, token)


async def _settle(endpoint: ScheduledCrashes) -> None:
    """Let the loop read what the sockets still hold: until a pass brings no new arrival."""
    while True:
        before = endpoint.arrivals
        for _ in range(3):
            await asyncio.sleep(0.001)
        if endpoint.arrivals == before:
            return


async def _real(
    transport: str,
    bank: BankTemplate,
    workload: Workload,
    model: Model,
    schedule: FaultSchedule,
    clients: int,
    seed: int,
) -> ScheduleRun:
    stream = transport == "tcp"
    with bank.fresh() as ledger:
        endpoint = ScheduledCrashes(
            BankService(ledger), workload.semantics, schedule.crash_at, workload.reply_cache()
        )
        operations = workload.operations(clients)
        opening = ledger.total_balance()
        server = await start_server(transport, ServerContext(endpoint, host=HOST))
        lag = LoopLag()
        watch = asyncio.create_task(lag.watch())
        # Partition windows count from here, as the simulator's from its time 0.
        origin = asyncio.get_running_loop().time()
        links = schedule.links(clients, stream=stream, tcp=model.recovery, origin=origin)
        try:
            channels = [_channel(transport, server.port, pair) for pair in links]
            per_client = await asyncio.gather(
                *(
                    _client(channels[i], workload, i, plan, bank.tokens[i], seed)
                    for i, plan in enumerate(operations)
                )
            )
            await server.drain(DRAIN_SECONDS)
            await _settle(endpoint)
        finally:
            watch.cancel()
            await server.close()
        run = summarise(
            ledger,
            [op for plan in operations for op in plan],
            [r for results in per_client for r in results],
            opening,
            links,
            endpoint.arrivals,
            endpoint.crashes,
        )
        return dataclasses.replace(run, timer_lag=lag.worst)


class LoopLag:
    """How late the event loop ran a timer, at worst, while it watched.

    A real replay takes the simulator's branch only while timers fire on time:
    a retry due at 150 ms that runs after TCP's retransmission at ~204 ms
    finds the reply already there. The replay reports this so that a
    disagreement on a busy machine can be told from one in the code.
    """

    PERIOD = 0.005

    def __init__(self) -> None:
        self.worst = 0.0

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.PERIOD
            await asyncio.sleep(self.PERIOD)
            self.worst = max(self.worst, loop.time() - due)


def _channel(transport: str, port: int, links: Links) -> TcpChannel | UdpChannel:
    if transport == "tcp":
        return TcpChannel(HOST, port, links)
    return UdpChannel(HOST, port, links)


@dataclass(frozen=True)
class Replayer:
    """Runs schedules with one workload, client count and seed on any of ``REPLAYS``.

    ``model`` says which stream rules the TCP replays follow (retransmit or
    reset; the datagram model means retransmit); the UDP ones always follow
    the datagram rules.
    """

    bank: BankTemplate
    workload: Workload
    model: Model
    clients: int
    seed: int = 0

    @property
    def stream_model(self) -> Model:
        return self.model if self.model.stream else Model.TCP

    def run(self, where: str, schedule: FaultSchedule) -> ScheduleRun:
        """Run ``schedule`` on ``where``: sim-udp, udp, sim-tcp or tcp."""
        if where not in REPLAYS:
            raise ValueError(f"replay on one of {', '.join(REPLAYS)}, not {where!r}")
        if where.startswith("sim-"):
            model = self.stream_model if where == "sim-tcp" else Model.DATAGRAM
            return run_in_sim(
                self.bank, self.workload, model, schedule, self.clients, seed=self.seed
            )

        async def bounded() -> ScheduleRun:
            async with asyncio.timeout(REPLAY_SECONDS):
                return await _real(
                    where,
                    self.bank,
                    self.workload,
                    self.stream_model,
                    schedule,
                    self.clients,
                    self.seed,
                )

        return asyncio.run(bounded())

    def replay(self, schedule: FaultSchedule, where: Sequence[str] = REPLAYS) -> Replay:
        return Replay({w: self.run(w, schedule) for w in where})


@dataclass(frozen=True)
class Replay:
    """The same schedule on each of ``REPLAYS``."""

    runs: dict[str, ScheduleRun]

    def agree(self, real: str) -> bool:
        """Whether the real transport's run matches its simulator's, operation by operation."""
        return signature(self.runs[real]) == signature(self.runs[f"sim-{real}"])


def signature(run: ScheduleRun) -> tuple[tuple[str, int, str, int | None], ...]:
    """Per operation: its id, how many ledger rows it made, what its client was told,
    and which attempt's reply told it (None: no reply)."""
    applied = {op.request_id: len(run.applied(op.request_id)) for op in run.operations}
    return tuple(
        (
            op.request_id,
            applied[op.request_id],
            result.outcome.value,
            None if result.reply is None else result.reply.attempt,
        )
        for op, result in zip(run.operations, run.results, strict=True)
    )
