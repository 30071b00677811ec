"""Interactive clients: text, numbers and the lab's ATM dialogue.

They read standard input line by line (typed or piped) and talk to a server
through ``transports.aio.client.RpcClient``. Each answers like the lab's clients;
the ATM adds what a retrying client must say honestly: an operation whose
outcome is unknown may or may not have been applied.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from services.programs.config import ClientConfig
from transports.aio.client import RpcClient, open_channel
from transports.call import CallResult, Outcome, RetrySettings

DISCONNECT = "!DISCONNECT"
MENU = "1. Check Balance\n2. Deposit\n3. Withdraw\n4. Exit"
MAX_LOGIN_TRIES = 5


class ServerUnreachable(Exception):
    """No answer at all: the server is down or every attempt was lost."""


def ask(prompt: str) -> str | None:
    """One line of input, or None at end of input."""
    try:
        return input(prompt).strip()
    except EOFError:
        print()
        return None


async def run_client(config: ClientConfig, settings: RetrySettings) -> int:
    """The interactive client ``config`` names, retrying as ``settings`` says; the exit status.

    Only the link faults of ``config.faults`` act here, on the client's links.
    """
    channel = open_channel(
        config.transport,
        config.host,
        config.port,
        faults=config.faults.link,
        seed=config.seed,
        name="cli",
    )
    client = RpcClient(channel, settings)
    try:
        if config.service == "atm":
            await Atm(client).run()
        else:
            await _line_client(client, config.service)
    except ServerUnreachable as err:
        where = f"{config.transport}://{config.host}:{config.port}"
        print(f"error: {err} ({where})", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0


async def _request(client: RpcClient, op: str, args: dict[str, Any]) -> CallResult:
    result = await client.call(op, args)
    if result.outcome is not Outcome.OK and result.reply is None:
        cause = f": {client.last_error}" if client.last_error else ""
        raise ServerUnreachable(f"no reply after {result.attempts} attempt(s){cause}")
    return result


async def _line_client(client: RpcClient, service: str) -> None:
    """The lab's Problem A clients: one line in, the server's answer out."""
    prompt = "Enter message: " if service == "text" else "Enter number: "
    while (line := ask(prompt)) is not None and line != DISCONNECT:
        if service == "text":
            result = await _request(client, "text.convert", {"text": line})
            if result.outcome is Outcome.OK:
                r = result.result
                print(f"[Lower Case] {r['lower']} [Upper Case] {r['upper']}")
        else:
            result = await _request(client, "numbers.check", {"n": line})
            if result.outcome is Outcome.OK:
                r = result.result
                print(f"[Prime] {r['prime']} [Palindrome] {r['palindrome']}")
        if result.outcome is not Outcome.OK:
            print(f"[Error] {result.reply.error_message if result.reply else 'no reply'}")


@dataclass
class SessionStats:
    """The lab's per-session transaction counters (deposits and withdrawals)."""

    total: int = 0
    successful: int = 0

    def record(self, ok: bool) -> None:
        self.total += 1
        self.successful += ok

    def report(self) -> str:
        if not self.total:
            return "Total transactions: 0"
        rate = self.successful / self.total
        return (
            f"Successful transactions: {self.successful}\n"
            f"Total transactions: {self.total}\n"
            f"Success rate: {rate:.2f}\n"
            f"Error rate: {1 - rate:.2f}"
        )


class Atm:
    """The lab's ATM booth: login, then the menu until Exit."""

    def __init__(self, client: RpcClient) -> None:
        self.client = client
        self.stats = SessionStats()
        self.token = ""

    async def run(self) -> None:
        if not await self._login():
            return
        while (choice := ask(f"{MENU}\nEnter choice: ")) is not None:
            if choice == "4":
                break
            if choice == "1":
                await self._balance()
            elif choice in ("2", "3"):
                await self._transact("deposit" if choice == "2" else "withdraw")
            else:
                print("Invalid choice: enter 1, 2, 3 or 4")
        await _request(self.client, "bank.logout", {"token": self.token})
        print("Goodbye")

    async def _login(self) -> bool:
        for _ in range(MAX_LOGIN_TRIES):
            account = ask("Enter ID: ")
            pin = ask("Enter Password: ") if account is not None else None
            if account is None or pin is None:
                return False
            if not account.isdigit():
                print("Invalid ID or Password")
                continue
            result = await _request(
                self.client, "bank.login", {"account": int(account), "pin": pin}
            )
            if result.outcome is Outcome.OK:
                self.token = result.result["token"]
                print(f"Welcome {result.result['name']}!")
                return True
            print("Invalid ID or Password")
        print("Too many failed logins")
        return False

    async def _balance(self) -> None:
        result = await _request(self.client, "bank.balance", {"token": self.token})
        if result.outcome is Outcome.OK:
            print(f"Your balance is {result.result['balance']}")
        else:
            print(f"Balance unavailable: {_describe_failure(result)}")
        print(self.stats.report())

    async def _transact(self, kind: str) -> None:
        raw = ask(f"Enter amount to {kind}: ")
        if raw is None:
            return
        if not raw.isdigit() or int(raw) <= 0:
            print("Invalid amount: enter a positive whole number")
            return
        result = await _request(
            self.client, f"bank.{kind}", {"token": self.token, "amount": int(raw)}
        )
        self.stats.record(result.outcome is Outcome.OK)
        if result.outcome is Outcome.OK:
            print(f"Your balance is {result.result['balance']}")
        elif result.outcome is Outcome.FAILED:
            print(f"Transaction failed: {_describe_failure(result)}\nPlease try again")
        else:
            print("Transaction outcome unknown: it may or may not have been applied")
        print(self.stats.report())


def _describe_failure(result: CallResult) -> str:
    if result.reply is None:
        return f"no reply after {result.attempts} attempt(s)"
    return f"{result.reply.error_message} ({result.reply.error_code})"
