"""``python -m experiments.kernel``: the retries experiment with real kernel faults.

Role: the ``kernel`` fault backend of ``experiments.retries``. Each cell gets a
fresh pair of network namespaces (``transports.netns``): the bank server's
sockets live in namespace ``b``, the clients' in ``a``, and the kernel drops
packets on the veth link between them (nftables random drop, per packet, each
direction). No in-process fault link is used, so TCP retransmits below the
application and only UDP relies on the client's retries. ``app_fail`` still
acts in the ledger. The options are those of ``experiments.retries`` (same
cells, workload, audit and tables), plus ``--rate`` (tc tbf); records carry
``backend: kernel`` and the kernel's own packet counters, and the defaults
write ``results/retries_kernel.*``. Compare with ``experiments.compare``.

One process holds both ends: ``netns.inside`` moves the event-loop thread into
``b`` while the server socket is opened, and into ``a`` for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import retries
from experiments.audit import audit
from experiments.cli import Progress, environment
from experiments.report import Record, record, render, write_results
from experiments.runner import SCRYPT_N, SESSION_TTL, Cell, CellRun, run_client
from experiments.workload import Operation, open_accounts, plan_operations
from services.bank import BankService
from services.ledger import Ledger
from services.programs.server_faults import app_failures
from transports.aio.client import start_server
from transports.aio.driver import ServerContext
from transports.call import CallResult
from transports.endpoint import ServerEndpoint
from transports.faults import FaultSpecError
from transports.netns import NetnsError, NetnsPair, Side, inside, support

BACKEND = "kernel"


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
        finally:
            await server.close()
    return [result for client in per_client for result in client]


def kernel_record(kernel: KernelRun) -> Record:
    """The usual record, marked as kernel faults, with the kernel's packet counters.

    The analytic model assumes loss per *message*. Under TCP the kernel loses
    packets that TCP then retransmits, so the model's prediction does not apply
    and is left out; for UDP one message is one packet and it stays.
    """
    rec = record(kernel.run)
    if kernel.run.cell.transport == "tcp":
        rec.pop("predicted", None)
        rec.pop("agrees", None)
    rec["backend"] = BACKEND
    rec["loss_tool"] = kernel.loss_tool
    rec["kernel_packets"] = kernel.packets
    for direction, counts in kernel.packets.items():
        rec[f"pkt_loss_{direction.replace('->', '_')}"] = round(
            counts.get("dropped", 0) / max(1, counts.get("packets", 0)), 4
        )
    return rec


def build_parser() -> argparse.ArgumentParser:
    p = retries.build_parser()
    p.prog = "python -m experiments.kernel"
    p.description = (
        "The retries experiment with real kernel packet loss between two network "
        "namespaces (root, Linux, nftables or iptables). Options as experiments.retries."
    )
    p.set_defaults(transports=["tcp", "udp"], name="retries_kernel", fault_backend=BACKEND)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.kernel``: ``experiments.retries --fault-backend kernel``."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the parsed retries options with kernel faults (``--quick`` already applied)."""
    reason = support().skip_reason(tbf=bool(args.rate))
    if reason is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    try:
        if "sim" in args.transports:
            raise ValueError("the kernel backend runs tcp and udp only (sim has no kernel)")
        cells = retries.cells_from(args)
    except (ValueError, FaultSpecError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress = Progress(len(cells), enabled=not args.no_progress)
    records = []
    try:
        for cell in cells:
            records.append(kernel_record(run_kernel_cell(cell, rate=args.rate)))
            progress.step(f"{cell.transport} {cell.semantics.value} loss={cell.faults.loss}")
    except NetnsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env = environment()
    env["fault_backend"] = f"kernel ({records[0]['loss_tool']} random drop per packet, netns+veth)"
    print(f"Fault backend: {env['fault_backend']}\n")
    print(render(records, env))
    params: dict[str, Any] = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
    }
    params["fault_backend"] = BACKEND
    written = write_results(args.out, args.name, records, params, env)
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
