"""Helpers that start real servers on loopback sockets (port 0: a free port)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.base import Service
from transports.call import RetrySettings
from transports.client import RpcClient, RunningServer, open_channel, start_server
from transports.driver import ServerContext, ServerLimits
from transports.endpoint import ServerEndpoint
from transports.retry import RetryPolicy
from transports.semantics import Semantics


@asynccontextmanager
async def running(
    transport: str,
    service: Service,
    semantics: Semantics = Semantics.AT_LEAST_ONCE,
    limits: ServerLimits | None = None,
) -> AsyncIterator[RunningServer]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        ctx = ServerContext(ServerEndpoint(service, semantics), pool=pool, limits=limits)
        server = await start_server(transport, ctx)
        try:
            yield server
        finally:
            await server.close()


def client_for(server: RunningServer, attempts: int = 4, timeout: float = 1.0) -> RpcClient:
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=timeout), max_attempts=attempts)
    return RpcClient(open_channel(server.transport, server.host, server.port), settings)
