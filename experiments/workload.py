"""The bank workload of an experiment cell: accounts, sessions and operations.

Each client owns one account funded so that no withdrawal is ever refused,
and performs a seeded sequence of deposits and withdrawals, each a logical
operation with its own request id. Sessions are opened out of band, straight
on the ledger, so that only the measured operations cross the faulty network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from services.ledger import Ledger
from transports.sim import SimRequest

PIN = "0000"
FIRST_ACCOUNT = 1000
OPENING_BALANCE = 10**12  # far above any sum of withdrawals in one cell
MAX_OP_AMOUNT = 1000


@dataclass(frozen=True)
class Operation:
    """One logical operation as the experiment planned it."""

    request_id: str
    kind: str  # "deposit" | "withdraw"
    amount: int
    account: int

    @property
    def signed_amount(self) -> int:
        return self.amount if self.kind == "deposit" else -self.amount

    def call_args(self, token: str) -> tuple[str, dict[str, Any]]:
        return f"bank.{self.kind}", {"token": token, "amount": self.amount}


def plan_operations(seed: int, clients: int, ops: int) -> list[list[Operation]]:
    """``ops`` operations spread over ``clients``, reproducible from ``seed``."""
    plans: list[list[Operation]] = []
    for index in range(clients):
        rng = random.Random(f"{seed}/workload{index}")
        count = ops // clients + (index < ops % clients)
        plans.append(
            [
                Operation(
                    request_id=f"c{index}-{n}",
                    kind=rng.choice(("deposit", "withdraw")),
                    amount=rng.randint(1, MAX_OP_AMOUNT),
                    account=FIRST_ACCOUNT + index,
                )
                for n in range(1, count + 1)
            ]
        )
    return plans


def ops_text(ops: int, clients: int) -> str:
    """How ``plan_operations`` spreads ``ops`` over ``clients``, for a table's note."""
    low = ops // clients
    each = f"{low}" if ops % clients == 0 else f"{low} or {low + 1}"
    return (
        f"{ops} operations per cell (deposits and withdrawals drawn at random), "
        f"{each} from each of {clients} concurrent clients"
    )


def open_accounts(ledger: Ledger, clients: int, now: float) -> list[str]:
    """Create one funded account per client and return a session token each."""
    tokens = []
    for index in range(clients):
        account = FIRST_ACCOUNT + index
        ledger.create_account(account, f"client {index}", PIN, OPENING_BALANCE)
        token, _ = ledger.login(account, PIN, now)
        tokens.append(token)
    return tokens


def sim_plans(plans: list[list[Operation]], tokens: list[str]) -> list[list[SimRequest]]:
    """The planned operations as the simulator's requests, each with its client's token."""
    return [
        [SimRequest(op.request_id, *op.call_args(token)) for op in plan]
        for plan, token in zip(plans, tokens, strict=True)
    ]
