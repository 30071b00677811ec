"""Real loopback sockets for ``experiments.outages``: the simulator's cell, in real time.

Role: run one outage cell's schedule through a real server (``start_server``:
tcp or udp on 127.0.0.1, a SQLite ledger file, the worker pool) and real
clients whose fault links count the partition from the run's origin (the
loop time the load starts at). Every client sleeps until each operation's
scheduled start, as the simulator's ``not_before`` does, and a client behind
schedule catches up back to back. Times come back relative to the origin, so
the measurements are the simulator's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
from collections.abc import Callable, Sequence

from experiments.runner import DRAIN_SECONDS, SERVER_THREADS
from experiments.workload import FIRST_ACCOUNT, Operation
from services.ledger import Ledger
from transports.aio.client import RpcClient, open_channel, start_server
from transports.aio.driver import ServerContext
from transports.call import CallResult, RetrySettings
from transports.endpoint import ServerEndpoint
from transports.faults import LinkFaults

#: Set-up time before the load starts: every client's channel is open by then.
LEAD = 0.5


async def run_real(
    transport: str,
    ledger: Ledger,
    endpoint: ServerEndpoint,
    plans: Sequence[Sequence[Operation]],
    times: Sequence[Sequence[float]],
    tokens: Sequence[str],
    faults: LinkFaults,
    settings: Callable[[], RetrySettings],
    seed: int,
) -> tuple[list[list[CallResult]], float]:
    """Every client's results (loop times) and the origin the schedule counted from."""
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=SERVER_THREADS) as pool:
        warm = [pool.submit(ledger.balance, FIRST_ACCOUNT) for _ in range(SERVER_THREADS)]
        concurrent.futures.wait(warm)
        server = await start_server(transport, ServerContext(endpoint, pool=pool))
        origin = loop.time() + LEAD
        try:
            calls = await asyncio.gather(
                *(
                    _client(transport, i, server.port, plan, starts, token, faults, settings,
                            seed, origin)
                    for i, (plan, starts, token) in enumerate(
                        zip(plans, times, tokens, strict=True)
                    )
                )
            )  # fmt: skip
            await server.drain(DRAIN_SECONDS)
        finally:
            await server.close()
    return list(calls), origin


async def _client(
    transport: str,
    index: int,
    port: int,
    plan: Sequence[Operation],
    starts: Sequence[float],
    token: str,
    faults: LinkFaults,
    settings: Callable[[], RetrySettings],
    seed: int,
    origin: float,
) -> list[CallResult]:
    name = f"client{index}"
    channel = open_channel(
        transport, "127.0.0.1", port, faults=faults, seed=seed, name=name, origin=origin
    )
    client = RpcClient(
        channel, settings(), rng=random.Random(f"{seed}/{name}"), client_id=f"c{index}"
    )
    loop = asyncio.get_running_loop()
    results = []
    try:
        for op, at in zip(plan, starts, strict=True):
            if (wait := origin + at - loop.time()) > 0:
                await asyncio.sleep(wait)
            op_name, args = op.call_args(token)
            results.append(await client.call(op_name, args, request_id=op.request_id))
    finally:
        await client.close()
    return results
