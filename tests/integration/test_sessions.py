"""The lab's sessions over real loopback sockets, on both transports."""

from __future__ import annotations

import asyncio

from services.bank import BankService
from services.ledger import Ledger
from services.numbers import NumbersService
from services.text import TextService
from tests.integration.servers import client_for, running
from transports.aio.client import RpcClient
from transports.call import Outcome
from transports.semantics import Semantics

LAB_TEXT = [
    "hello world",
    "ashik and dibbyo",
    "this is our second networking lab",
    "and the lab is about socket programming",
    "hi",
]
# The lab's Problem A.2 inputs and the answers a correct checker gives.
LAB_NUMBERS = {
    "121": (False, True),
    "10": (False, False),
    "22": (False, True),
    "30": (False, False),
    "99": (False, True),
    "23": (True, False),
    "12": (False, False),
    "11": (True, True),
}


def test_text_session(transport: str) -> None:
    async def session() -> None:
        async with running(transport, TextService()) as server:
            client = client_for(server)
            for line in LAB_TEXT:
                result = await client.call("text.convert", {"text": line})
                assert result.outcome is Outcome.OK
                assert result.result == {"lower": line.lower(), "upper": line.upper()}
            await client.close()

    asyncio.run(session())


def test_numbers_session(transport: str) -> None:
    async def session() -> None:
        async with running(transport, NumbersService()) as server:
            client = client_for(server)
            for n, (prime, palindrome) in LAB_NUMBERS.items():
                result = await client.call("numbers.check", {"n": n})
                assert result.outcome is Outcome.OK
                assert (result.result["prime"], result.result["palindrome"]) == (prime, palindrome)
            bad = await client.call("numbers.check", {"n": "twelve"})
            assert bad.outcome is Outcome.FAILED
            assert bad.error_code == "INVALID_ARGUMENT"
            await client.close()

    asyncio.run(session())


def test_atm_deposit_of_two_gives_10002(transport: str, ledger: Ledger) -> None:
    async def session() -> None:
        async with running(transport, BankService(ledger), Semantics.EXACTLY_ONCE) as server:
            client = client_for(server)
            login = await client.call("bank.login", {"account": 1, "pin": "1234"})
            assert login.outcome is Outcome.OK
            assert login.result["name"] == "Dibbyo Roy"
            token = login.result["token"]
            deposit = await client.call("bank.deposit", {"token": token, "amount": 2})
            assert deposit.result["balance"] == 10002
            balance = await client.call("bank.balance", {"token": token})
            assert balance.result["balance"] == 10002
            refused = await client.call("bank.withdraw", {"token": token, "amount": 10**6})
            assert refused.error_code == "INSUFFICIENT_FUNDS"
            wrong_pin = await client.call("bank.login", {"account": 1, "pin": "9999"})
            assert wrong_pin.error_code == "AUTH_FAILED"
            await client.close()

    asyncio.run(session())
    assert ledger.balance(1) == 10002


def test_concurrent_deposits_lose_no_update(transport: str, ledger: Ledger) -> None:
    clients, deposits_each = 32, 25

    async def depositor(client: RpcClient) -> int:
        login = await client.call("bank.login", {"account": 2, "pin": "1234"})
        token = login.result["token"]
        ok = 0
        for _ in range(deposits_each):
            result = await client.call("bank.deposit", {"token": token, "amount": 3})
            ok += result.outcome is Outcome.OK
        await client.close()
        return ok

    async def session() -> list[int]:
        async with running(transport, BankService(ledger), Semantics.EXACTLY_ONCE) as server:
            return await asyncio.gather(
                *(depositor(client_for(server, timeout=5.0)) for _ in range(clients))
            )

    oks = asyncio.run(session())
    assert sum(oks) == clients * deposits_each
    assert ledger.balance(2) == 10000 + 3 * clients * deposits_each
    applied = ledger.applications()
    assert len(applied) == clients * deposits_each
    assert set(applied.values()) == {1}
