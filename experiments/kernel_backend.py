"""The kernel fault backend of the retries experiment: one cell between two network namespaces.

Each cell gets a fresh pair of network namespaces (``transports.netns``): the
bank server's sockets live in namespace ``b``, the clients' in ``a``, and the
kernel drops packets on the veth link between them (nftables random drop, per
packet, each direction). No in-process fault link is used, so TCP retransmits
below the application and only UDP relies on the client's retries.
``app_fail`` still acts in the ledger. ``KernelRecord`` is the retries record
plus ``backend: kernel`` and the kernel's own packet counters. The command
lines are ``python -m experiments.retries --fault-backend kernel`` and its
alias ``python -m experiments.kernel`` (root, Linux).

One process holds both ends: ``netns.inside`` moves the event-loop thread into
``b`` while the server socket is opened, and into ``a`` for everything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from experiments.audit import audit
from experiments.cell_record import BankRecord, bank_record
from experiments.framework.records import FLATTEN
from experiments.runner import SCRYPT_N, SESSION_TTL, Cell, CellRun, run_client
from experiments.workload import Operation, open_accounts, plan_operations
from services.bank import BankService
from services.ledger import Ledger
from services.programs.server_faults import app_failures
from transports.aio.client import start_server
from transports.aio.driver import ServerContext
from transports.call import CallResult
from transports.endpoint import ServerEndpoint
from transports.netns import NetnsError, NetnsPair, Side, inside, support

__all__ = [
    "BACKEND", "KernelRecord", "KernelRun", "NetnsError", "kernel_record", "run_kernel_cell",
    "skip_reason",
]  # fmt: skip

BACKEND = "kernel"


#: How long a cell waits, at most, for what the clients' kernels still retransmit
#: after they closed (RTOs back off to seconds under heavy loss).
KERNEL_DRAIN_SECONDS = 30.0


@dataclass(frozen=True)
class KernelRun:
    run: CellRun
    packets: dict[str, dict[str, int]]  # per direction: packets seen, dropped, reset
    loss_tool: str | None


def run_kernel_cell(
    cell: Cell, *, rate: str | None = None, workdir: Path | None = None
) -> KernelRun:
    """``runner.run_cell`` with the faults done by the kernel between two namespaces."""
    if cell.transport not in ("tcp", "udp"):
        raise ValueError(f"the kernel backend needs a real transport, not {cell.transport!r}")
    with NetnsPair() as pair, tempfile.TemporaryDirectory(dir=workdir) as tmp:
        pair.apply(cell.faults, rate=rate)
        started = time.perf_counter()
        ledger = Ledger(
            str(Path(tmp) / "ledger.sqlite3"),
            fault_point=app_failures(cell.faults.server, cell.seed),
            scrypt_n=SCRYPT_N,
            session_ttl=SESSION_TTL,
        )
        try:
            plans = plan_operations(cell.seed, cell.clients, cell.ops)
            endpoint = ServerEndpoint(BankService(ledger), cell.semantics)
            tokens = open_accounts(ledger, cell.clients, now=time.monotonic())
            opening = ledger.total_balance()
            with inside(pair.a.netns):  # the clients' sockets live in namespace a
                results = asyncio.run(_run(cell, endpoint, plans, tokens, pair.b))
            operations = [op for plan in plans for op in plan]
            outcome = audit(
                operations, results, ledger.applications(), ledger.total_balance(), opening
            )
        finally:
            ledger.close()
        seconds = time.perf_counter() - started
        packets = pair.counters()
        return KernelRun(CellRun(cell, outcome, seconds, dict(endpoint.counters)), packets,
                         pair.loss_tool)  # fmt: skip


async def _run(
    cell: Cell,
    endpoint: ServerEndpoint,
    plans: list[list[Operation]],
    tokens: list[str],
    server_side: Side,
) -> list[CallResult]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        # Only this task runs while the loop thread is in b: the server opens its
        # socket there, then the thread returns to a.
        with inside(server_side.netns):
            context = ServerContext(endpoint, host=server_side.address, pool=pool)
            server = await start_server(cell.transport, context)
        try:
            per_client = await asyncio.gather(
                *(
                    run_client(
                        cell,
                        index,
                        server.port,
                        plan,
                        token,
                        host=server_side.address,
                        link_faults=False,
                    )
                    for index, (plan, token) in enumerate(zip(plans, tokens, strict=True))
                )
            )
            # Closed sockets still send what the kernel holds: audit once it arrived.
            await server.drain(KERNEL_DRAIN_SECONDS)
        finally:
            await server.close()
    return [result for client in per_client for result in client]


KERNEL_TCP = "kernel TCP: packets (and ACKs) lost, recovered as the model does not (RACK, SACK)"


@dataclass(frozen=True, kw_only=True)
class KernelRecord(BankRecord):
    """A retries record whose faults the kernel made, with its packet counters."""

    backend: str
    loss_tool: str | None
    kernel_packets: Mapping[str, Mapping[str, int]]  # per direction: packets, dropped, reset
    packet_loss: Mapping[str, float] = field(metadata=FLATTEN)  # pkt_loss_a_b, pkt_loss_b_a


def kernel_record(kernel: KernelRun) -> KernelRecord:
    """The usual record, marked as kernel faults, with the kernel's packet counters.

    The analytic model assumes loss per *message*. Under TCP the kernel loses
    packets (ACKs included) that TCP then retransmits, with the recovery the
    fault layer's TCP model leaves out (RACK, SACK), so no prediction is given;
    for UDP one message is one packet and it stays.
    """
    base = dict(vars(bank_record(kernel.run)))
    if kernel.run.cell.transport == "tcp":
        base.update(predicted=None, agrees=None, no_prediction=KERNEL_TCP)
    packet_loss = {
        f"pkt_loss_{direction.replace('->', '_')}": round(
            counts.get("dropped", 0) / max(1, counts.get("packets", 0)), 4
        )
        for direction, counts in kernel.packets.items()
    }
    return KernelRecord(
        **base,
        backend=BACKEND,
        loss_tool=kernel.loss_tool,
        kernel_packets=kernel.packets,
        packet_loss=packet_loss,
    )


def skip_reason(rate: str | None) -> str | None:
    """Why this machine cannot run kernel cells (with a ``rate`` limit), or None."""
    return support().skip_reason(tbf=bool(rate))
