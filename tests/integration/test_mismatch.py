"""A client that reaches the wrong server says so (issue 15, item 10).

Real servers on loopback, in this process, and the interactive client run as
``python -m services client`` runs it (``run_client``, stdin from a string):

* the ATM at a text server, the text client at a bank server ...: the server
  answers UNKNOWN_OPERATION; the client names the service it needs and exits 5,
  instead of "Invalid ID or Password";
* our client at a ``--framing seed`` server: the server writes one line in the
  lab's format and closes; the client quotes it and exits 5, instead of
  "connection lost"; likewise any server whose first reply is not a frame;
* the lab's client at our server: it is told, in its own format, to use
  ``--framing seed``;
* a client on the other transport than the server: a hint to switch
  (TCP: connection refused, UDP: datagrams refused by ICMP).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from services.bank import BankService
from services.ledger import Ledger
from services.numbers import NumbersService
from services.programs.clients import (
    EXIT_UNKNOWN,
    EXIT_UNREACHABLE,
    EXIT_WRONG_SERVER,
    run_client,
)
from services.programs.config import ClientConfig
from services.programs.server import make_seed_handler
from services.text import TextService
from transports.aio.client import RunningServer, default_settings, start_server
from transports.aio.driver import ServerContext
from transports.aio.tcp import WRONG_FRAMING_HINTS
from transports.call import RetrySettings
from transports.endpoint import ServerEndpoint
from transports.framing import seed_frame
from transports.retry import RetryPolicy
from transports.service import Service

LOGIN = "1\n1234\n4\n"


@asynccontextmanager
async def serving(
    transport: str, service: Service, *, seed: bool = False
) -> AsyncIterator[RunningServer]:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        context = ServerContext(ServerEndpoint(service), pool=pool)
        handler = make_seed_handler(service.name) if seed else None
        server = await start_server(transport, context, handler)
        try:
            yield server
        finally:
            await server.close()


async def run(
    client: str, server: RunningServer, stdin: str, monkeypatch: pytest.MonkeyPatch
) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    config = ClientConfig(client, server.transport, server.host, server.port)
    settings = default_settings(server.transport)
    # A generous timeout: the tests wait for replies, not for timeouts.
    settings.policy = RetryPolicy.from_name(settings.policy.name, timeout=30.0)
    return await run_client(config, settings)


@pytest.mark.parametrize(
    ("client", "service", "needed", "stdin"),
    [
        ("atm", "text", "bank", LOGIN),
        ("atm", "numbers", "bank", LOGIN),
        ("text", "bank", "text", "hello\n"),
        ("numbers", "text", "numbers", "12\n"),
    ],
)
def test_a_server_of_another_service_is_named_as_such(
    transport: str,
    ledger: Ledger,
    client: str,
    service: str,
    needed: str,
    stdin: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    services: dict[str, Service] = {
        "text": TextService(),
        "numbers": NumbersService(),
        "bank": BankService(ledger),
    }

    async def scenario() -> int:
        async with serving(transport, services[service]) as server:
            return await run(client, server, stdin, monkeypatch)

    status = asyncio.run(scenario())
    out, err = capsys.readouterr()
    assert status == EXIT_WRONG_SERVER
    assert "Invalid ID or Password" not in out
    assert "wrong server" in err and "UNKNOWN_OPERATION" in err
    assert f"serve {needed}" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("client", "stdin"), [("text", "hello\n"), ("atm", LOGIN)])
def test_our_client_at_a_seed_server_is_told_to_drop_framing_seed(
    client: str, stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[int, int]:
        async with serving("tcp", TextService(), seed=True) as server:
            status = await run(client, server, stdin, monkeypatch)
            return status, server.context.endpoint.counters["rejected_framing"]

    status, rejected = asyncio.run(scenario())
    out, err = capsys.readouterr()
    assert (status, rejected) == (EXIT_WRONG_SERVER, 1)
    assert "connection lost" not in err and "Invalid ID or Password" not in out
    assert "wrong server" in err and "lab's seed protocol" in err
    assert "without --framing seed" in err
    assert len(err.strip().splitlines()) == 1


def test_a_first_reply_that_is_not_a_frame_is_quoted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def foreign(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> int:
        http = await asyncio.start_server(foreign, "127.0.0.1", 0)
        port = http.sockets[0].getsockname()[1]
        async with http:
            monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
            config = ClientConfig("text", "tcp", "127.0.0.1", port)
            return await run_client(config, default_settings("tcp"))

    status = asyncio.run(scenario())
    err = capsys.readouterr().err
    assert status == EXIT_WRONG_SERVER
    assert "not in the testbed protocol" in err and "HTTP/1.1 400 Bad Request" in err
    assert "connection lost" not in err


def test_the_labs_client_at_our_server_is_told_to_use_framing_seed() -> None:
    async def scenario() -> bytes:
        async with serving("tcp", TextService()) as server:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(seed_frame("hello"))  # what the lab's client sends
            reply = await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            return reply

    reply = asyncio.run(scenario())
    assert reply.decode() == WRONG_FRAMING_HINTS["seed"]
    assert reply.startswith(b"[Error] ") and b"--framing seed" in reply


@pytest.mark.parametrize(
    ("server_transport", "client_transport", "status", "advice"),
    [
        ("tcp", "udp", EXIT_UNKNOWN, "use --transport tcp"),
        ("udp", "tcp", EXIT_UNREACHABLE, "needs --transport udp here too"),
    ],
)
def test_a_server_on_the_other_transport_gets_a_hint(
    server_transport: str,
    client_transport: str,
    status: int,
    advice: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def scenario() -> int:
        async with serving(server_transport, TextService()) as server:
            monkeypatch.setattr("sys.stdin", io.StringIO("hello\n"))
            config = ClientConfig("text", client_transport, server.host, server.port)
            # Over UDP each datagram is refused by ICMP at once; the client still
            # waits out its attempts (a refusal is no proof on a real network).
            settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=0.5), max_attempts=2)
            return await run_client(config, settings)

    result = asyncio.run(scenario())
    err = capsys.readouterr().err
    assert result == status
    assert advice in err
    assert len(err.strip().splitlines()) == 1
