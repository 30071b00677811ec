"""Interactive clients: text, numbers and the lab's ATM dialogue.

They read standard input line by line (typed or piped) and talk to a server
through ``transports.aio.client.RpcClient``. Each answers like the lab's clients,
and says honestly what became of each operation, from the ``Outcome`` of its call:

* applied (``OK``): the answer is shown;
* not applied: a definite error reply (shown, the session goes on), or no
  attempt ever left the client (every connect refused): the session ends with
  ``EXIT_UNREACHABLE``;
* unknown: a request was sent and no reply came (or the server reported an
  internal error). It may or may not have been applied; the client says what the
  user can do next, and ends with ``EXIT_UNKNOWN``.

A server that is not the one the client needs ends the session at once with
``EXIT_WRONG_SERVER`` and a line saying what was found and what to do: one
that hosts another service (it answers ``UNKNOWN_OPERATION``, e.g. the ATM at
a text server), or one whose reply is not in the testbed protocol (e.g. a
server started with ``--framing seed``, which says so in the lab's format).

Input the services would refuse (too long, not UTF-8, out of range) gets a
one-line error before anything is sent, and the session goes on. Ctrl-C at any
point ends the session at once (``EXIT_INTERRUPTED``); Ctrl-D ends it as ``4``
(Exit) would.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import signal
import sys
from dataclasses import dataclass
from typing import Any

from services.bank import MAX_PIN_LEN
from services.ledger import MAX_AMOUNT
from services.primes import MAX_DIGITS
from services.programs.config import ClientConfig
from services.text import MAX_TEXT_CHARS
from transports.aio.client import RpcClient, open_channel
from transports.aio.driver import WrongProtocol
from transports.call import CallResult, Outcome, RetrySettings
from transports.wire import WireError

DISCONNECT = "!DISCONNECT"
MENU = "1. Check Balance\n2. Deposit\n3. Withdraw\n4. Exit"
MAX_LOGIN_TRIES = 5
MAX_ACCOUNT_DIGITS = 18  # account numbers fit a signed 64-bit integer
UNKNOWN_OPERATION = "UNKNOWN_OPERATION"  # the error code of a server hosting another service

EXIT_OK = 0
EXIT_UNREACHABLE = 3
EXIT_UNKNOWN = 4
EXIT_WRONG_SERVER = 5
EXIT_INTERRUPTED = 130

EXIT_STATUS_HELP = """\
exit status:
  0    the session ended normally: every operation was applied, or refused
       with a definite error that was shown (nothing applied)
  2    bad options
  3    server unreachable: no request ever left this client (e.g. connection
       refused), so nothing was applied
  4    outcome unknown: a request was sent and no reply came (or the server
       reported an internal error), so it may or may not have been applied;
       check the balance before repeating a deposit or withdrawal
  5    wrong server: it hosts another service (UNKNOWN_OPERATION), or does
       not answer in the testbed protocol (e.g. started with --framing seed)
  130  interrupted (Ctrl-C)
"""

_AMOUNT = re.compile(r"[0-9]+")
_ACCOUNT = re.compile(rf"[0-9]{{1,{MAX_ACCOUNT_DIGITS}}}")
_NUMBER = re.compile(r"[+-]?0*([0-9]*)")


class SessionEnded(Exception):
    """The session cannot go on; ``status`` is the exit status, the message says why."""

    status = 1


class ServerUnreachable(SessionEnded):
    """No request ever left the client (every connect refused): nothing was applied."""

    status = EXIT_UNREACHABLE


class OutcomeUnknown(SessionEnded):
    """A request was sent and no reply came: it may or may not have been applied."""

    status = EXIT_UNKNOWN


class WrongServer(SessionEnded):
    """The server hosts another service or speaks another protocol: retrying cannot help."""

    status = EXIT_WRONG_SERVER


class Interrupted(Exception):
    """Ctrl-C."""


class NotSent(Exception):
    """The input cannot be sent (e.g. too large for a message): nothing left the client."""


def ask(prompt: str, *, secret: bool = False) -> str | None:
    """One line of input, or None at end of input; Interrupted on Ctrl-C.

    ``secret``: not echoed when standard input is a terminal (a PIN).
    """
    try:
        if secret and sys.stdin.isatty():
            return getpass.getpass(prompt).strip()
        return input(prompt).strip()
    except EOFError:
        print()
        return None
    except KeyboardInterrupt:
        raise Interrupted from None


def not_utf8(line: str) -> bool:
    """Whether ``line`` came from bytes that are not UTF-8 (decoded with surrogateescape)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


async def run_client(config: ClientConfig, settings: RetrySettings) -> int:
    """The interactive client ``config`` names, retrying as ``settings`` says; the exit status.

    Only the link faults of ``config.faults`` act here, on the client's links.
    """
    # Bytes that are not UTF-8 become lone surrogates (refused with a message)
    # instead of a UnicodeDecodeError out of input().
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")
    # Ctrl-C raises KeyboardInterrupt where it happens, also inside a blocking
    # input(), instead of asyncio.run's handler cancelling the session only at
    # its next await.
    previous = signal.getsignal(signal.SIGINT)
    if previous not in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    channel = open_channel(
        config.transport,
        config.host,
        config.port,
        faults=config.faults.link,
        seed=config.seed,
        name="cli",
    )
    session = Session(RpcClient(channel, settings))
    where = f"{config.transport}://{config.host}:{config.port}"
    try:
        if config.service == "atm":
            await Atm(session).run()
        else:
            await _line_client(session, config.service)
    except SessionEnded as err:
        print(f"error: {err} ({where})", file=sys.stderr)
        return err.status
    except Interrupted:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        await session.client.close()
        if previous not in (signal.SIG_IGN, None):
            signal.signal(signal.SIGINT, previous)
    return EXIT_UNKNOWN if session.unknown else EXIT_OK


@dataclass
class Session:
    """The client and what the session has met so far."""

    client: RpcClient
    unknown: bool = False  # an operation ended UNKNOWN with a reply (internal error)

    async def request(self, op: str, args: dict[str, Any], advice: str) -> CallResult:
        """Call ``op``; the result when a reply came.

        No attempt left: ServerUnreachable. Sent without a reply: ``advice`` is
        printed and OutcomeUnknown raised. Input too large to send: NotSent.
        """
        try:
            result = await self.client.call(op, args)
        except WireError as err:
            raise NotSent(_wire_reason(err)) from None
        except WrongProtocol as err:
            raise WrongServer(
                f"wrong server: {err}. A server started with --framing seed speaks the lab's "
                "protocol: use the lab's client for it, or start it without --framing seed"
            ) from None
        except asyncio.CancelledError:
            # asyncio.run cancels the session when Ctrl-C lands between awaits.
            print(f"\nNo reply yet. {advice}", file=sys.stderr)
            raise
        if result.reply is not None:
            if result.error_code == UNKNOWN_OPERATION:
                service = op.split(".")[0]
                raise WrongServer(
                    f"wrong server: it does not offer {op} ({_describe_failure(result)}); "
                    f"it hosts another service. Connect to a {service} server (--port, "
                    f"--transport), or start one: serve {service}"
                )
            if result.outcome is Outcome.UNKNOWN:
                self.unknown = True
            return result
        cause = f": {self.client.last_error}" if self.client.last_error else ""
        if result.outcome is Outcome.FAILED:  # no attempt ever left: nothing applied
            raise ServerUnreachable(
                f"server unreachable, nothing was sent ({result.attempts} attempt(s){cause}). "
                "Is a server running on this port? One started with --transport udp needs "
                "--transport udp here too"
            )
        print(
            f"No reply after {result.attempts} attempt(s) (request {result.request.id}). {advice}"
        )
        raise OutcomeUnknown(
            f"outcome unknown: no reply after {result.attempts} attempt(s){cause}"
            + _refused_hint(self.client)
        )


def _refused_hint(client: RpcClient) -> str:
    """What datagrams refused by the server's port suggest (UDP), or nothing."""
    refused = getattr(client.channel, "socket_errors", 0)  # UdpChannel: ICMP errors
    if not refused:
        return ""
    return (
        f"; the port refused {refused} datagram(s) (ICMP port unreachable), so no UDP "
        "server was listening when they arrived. Is the server running? One started "
        "without --transport udp speaks TCP: use --transport tcp"
    )


def _wire_reason(err: WireError) -> str:
    text = str(err)
    return text.split(": ", 1)[1] if ": " in text else text


READ_ONLY_ADVICE = "Its outcome is unknown, but it changes nothing: trying again is safe."


async def _line_client(session: Session, service: str) -> None:
    """The lab's Problem A clients: one line in, the server's answer out."""
    prompt = "Enter message: " if service == "text" else "Enter number: "
    while (line := ask(prompt)) is not None and line != DISCONNECT:
        problem = _text_problem(line) if service == "text" else _number_problem(line)
        if problem:
            print(f"[Error] {problem}")
            continue
        op, args = (
            ("text.convert", {"text": line})
            if service == "text"
            else ("numbers.check", {"n": line})
        )
        try:
            result = await session.request(op, args, READ_ONLY_ADVICE)
        except NotSent as err:
            print(f"[Error] not sent: {err}")
            continue
        r = result.result
        if result.outcome is Outcome.OK and service == "text":
            print(f"[Lower Case] {r['lower']} [Upper Case] {r['upper']}")
        elif result.outcome is Outcome.OK:
            print(f"[Prime] {r['prime']} [Palindrome] {r['palindrome']}")
        elif result.outcome is Outcome.FAILED:
            print(f"[Error] {_describe_failure(result)}")
        else:
            print(f"[Unknown] {_describe_failure(result)}. {READ_ONLY_ADVICE}")


def _text_problem(line: str) -> str | None:
    if not_utf8(line):
        return "input is not valid UTF-8; line ignored"
    if len(line) > MAX_TEXT_CHARS:
        return f"message has {len(line)} characters; the maximum is {MAX_TEXT_CHARS}"
    return None


def _number_problem(line: str) -> str | None:
    if not_utf8(line):
        return "input is not valid UTF-8; line ignored"
    match = _NUMBER.fullmatch(line)
    if match and len(match.group(1)) > MAX_DIGITS:
        return f"number has {len(match.group(1))} digits; the maximum is {MAX_DIGITS}"
    return None  # the server judges the rest and says why


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


def _money_advice(kind: str) -> str:
    return (
        f"The {kind} may or may not have been applied. Check your balance (1) once the "
        f"server answers before you {kind} again: a new {kind} could be applied twice. "
        "Only a resend with the same request id is safe, and only on a server with "
        "exactly-once or at-most-once semantics."
    )


class Atm:
    """The lab's ATM booth: login, then the menu until Exit."""

    def __init__(self, session: Session) -> None:
        self.session = session
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
        await self.session.request(
            "bank.logout",
            {"token": self.token},
            "The session may still be open on the server; it expires by itself.",
        )
        print("Goodbye")

    async def _login(self) -> bool:
        for _ in range(MAX_LOGIN_TRIES):
            account = ask("Enter ID: ")
            pin = ask("Enter Password: ", secret=True) if account is not None else None
            if account is None or pin is None:
                return False
            if not _ACCOUNT.fullmatch(account) or not 1 <= len(pin) <= MAX_PIN_LEN:
                print("Invalid ID or Password")
                continue
            if not_utf8(pin):
                print("Invalid ID or Password (the password is not valid UTF-8)")
                continue
            result = await self.session.request(
                "bank.login",
                {"account": int(account), "pin": pin},
                "Logging in changes no balance: trying again is safe.",
            )
            if result.outcome is Outcome.OK:
                self.token = result.result["token"]
                print(f"Welcome {result.result['name']}!")
                return True
            if result.outcome is Outcome.UNKNOWN:
                print(f"Login failed: {_describe_failure(result)}; trying again is safe")
                continue
            if result.error_code == "ACCOUNT_LOCKED":  # the message says for how long
                print(f"Login refused: {result.reply.error_message if result.reply else ''}")
                return False
            if result.error_code == "BUSY":
                print(f"Server busy, not logged in: {_describe_failure(result)}; try again")
                continue
            print("Invalid ID or Password")
        print("Too many failed logins")
        return False

    async def _balance(self) -> None:
        result = await self.session.request(
            "bank.balance",
            {"token": self.token},
            "Checking the balance changes nothing: trying again is safe.",
        )
        if result.outcome is Outcome.OK:
            print(f"Your balance is {result.result['balance']}")
        else:
            print(f"Balance unavailable: {_describe_failure(result)}")
        print(self.stats.report())

    async def _transact(self, kind: str) -> None:
        raw = ask(f"Enter amount to {kind}: ")
        if raw is None:
            return
        problem = _amount_problem(raw)
        if problem:
            print(f"Invalid amount: {problem}")
            return
        result = await self.session.request(
            f"bank.{kind}", {"token": self.token, "amount": int(raw)}, _money_advice(kind)
        )
        self.stats.record(result.outcome is Outcome.OK)
        if result.outcome is Outcome.OK:
            print(f"Your balance is {result.result['balance']}")
        elif result.outcome is Outcome.FAILED:
            print(f"Transaction failed: {_describe_failure(result)}\nNothing was applied")
        else:
            print(
                f"Transaction outcome unknown: {_describe_failure(result)} "
                f"(request {result.request.id}). {_money_advice(kind)}"
            )
        print(self.stats.report())


def _amount_problem(raw: str) -> str | None:
    """Why ``raw`` is not an amount the bank takes, or None."""
    digits = raw.lstrip("0")
    if not _AMOUNT.fullmatch(raw) or not digits:
        return "enter a positive whole number"
    if len(digits) > len(str(MAX_AMOUNT)) or int(digits) > MAX_AMOUNT:
        return f"the most is {MAX_AMOUNT}"
    return None


def _describe_failure(result: CallResult) -> str:
    if result.reply is None:
        return f"no reply after {result.attempts} attempt(s)"
    return f"{result.reply.error_message} ({result.reply.error_code})"
