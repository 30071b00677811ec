"""``python -m experiments.bench.login_flood``: a bank under a login flood.

Per transport: a bank server with its default limits; a logged-in client that
deposits every 100 ms; an attacker process sending ``--rate`` logins/s of
unknown accounts (UDP: from 64 source ports, never reading a reply, as spoofed
sources would; TCP: over 40 connections); a second client that logs in while
the flood runs; then SIGTERM to the server, still under the flood. Prints and
writes (``--out``, default a run folder under results/runs/) the deposits'
outcomes and latencies, the new login's time and the time SIGTERM took.

Targets (issue 16): every deposit succeeds with p99 under 250 ms, the new
login succeeds within 2 s, the server exits within 2 s of SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.bench.attack import (
    HOST,
    BankProcess,
    attacker_counts,
    default_out,
    environment,
    start_attacker,
    write_results,
)
from experiments.framework.results import check_writable
from services.ledger import Ledger
from transports.aio.client import RpcClient, default_settings, open_channel
from transports.call import Outcome

RAMP = 2.0  # seconds of flood before the measurements start
NEW_LOGIN_AT = 3.0  # seconds into the deposits
NEW_LOGIN_LIMIT = 10.0  # the new client gives up after this long
COUNTERS = (
    "refused_retry_with_token",
    "refused_busy",
    "error_auth_failed",
    "dropped_overload",
    "dropped_shutdown",
    "refused_connections",
    "refused_connections_per_source",
)


def _client(transport: str, port: int) -> RpcClient:
    return RpcClient(open_channel(transport, HOST, port), default_settings(transport))


async def _deposits(client: RpcClient, token: str, seconds: float) -> dict[str, Any]:
    latencies, ok, failed = [], 0, 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    k = 0
    while (due := start + 0.1 * k) < start + seconds:
        await asyncio.sleep(max(0.0, due - loop.time()))
        result = await client.call("bank.deposit", {"token": token, "amount": 1})
        latencies.append(result.latency)
        ok, failed = (ok + 1, failed) if result.outcome is Outcome.OK else (ok, failed + 1)
        k += 1
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "deposits_ok": ok,
        "deposits_failed": failed,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


async def _new_login(transport: str, port: int) -> dict[str, Any]:
    """A client arriving mid-flood: tries until it is logged in (bounded)."""
    await asyncio.sleep(NEW_LOGIN_AT)
    client = _client(transport, port)
    started = time.monotonic()
    tries, last = 0, ""
    try:
        while time.monotonic() - started < NEW_LOGIN_LIMIT:
            tries += 1
            result = await client.call("bank.login", {"account": 2, "pin": "1234"})
            if result.outcome is Outcome.OK:
                return {"new_login_s": round(time.monotonic() - started, 3), "login_tries": tries}
            last = result.error_code or "no reply"
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    return {"new_login_s": None, "login_tries": tries, "login_last_error": last}


async def _legitimate(transport: str, port: int, seconds: float) -> dict[str, Any]:
    client = _client(transport, port)
    login = await client.call("bank.login", {"account": 1, "pin": "1234"})
    assert login.outcome is Outcome.OK, login
    await asyncio.sleep(RAMP)  # the flood is on
    deposits, new_login = await asyncio.gather(
        _deposits(client, login.result["token"], seconds), _new_login(transport, port)
    )
    await client.close()
    return {**deposits, **new_login}


def login_cost(count: int = 20) -> dict[str, float]:
    """One login's time (scrypt at the server's default cost), in process, no load:
    what sizes the login queue (docs/SECURITY.md, "Fair per flow")."""
    times = []
    with (
        tempfile.TemporaryDirectory(prefix="login-cost-") as tmp,
        Ledger(str(Path(tmp) / "bank.db")) as ledger,
    ):
        for _ in range(count):
            started = time.perf_counter()
            ledger.login(1, "1234", now=time.time())
            times.append(time.perf_counter() - started)
    return {
        "login_median_ms": round(statistics.median(times) * 1000, 1),
        "login_max_ms": round(max(times) * 1000, 1),
    }


def measure(transport: str, rate: float, seconds: float, flood_host: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="login-flood-") as tmp:
        server = BankProcess.start(transport, str(Path(tmp) / "bank.db"))
        flood_seconds = RAMP + seconds + 4.0  # still flooding when SIGTERM comes
        attacker = start_attacker(
            f"flood-{transport}",
            server.port,
            flood_seconds,
            "--rate",
            str(rate),
            "--host",
            flood_host,
        )
        try:
            row = asyncio.run(_legitimate(transport, server.port, seconds))
            row["sigterm_exit_s"] = round(server.stop(), 3)
        finally:
            if server.proc.poll() is None:
                server.stop()
            flood = attacker_counts(attacker)
    row.update(transport=transport, flood_host=flood_host, flood_sent=flood.get("sent", 0))
    row["server"] = {key: server.counters.get(key, 0) for key in COUNTERS}
    return row


def verdicts(row: dict[str, Any]) -> dict[str, bool]:
    login = row["new_login_s"]
    return {
        "deposits_all_ok": row["deposits_failed"] == 0,
        "p99_under_250ms": row["p99_ms"] < 250,
        "new_login_under_2s": login is not None and login < 2.0,
        "sigterm_under_2s": row["sigterm_exit_s"] < 2.0,
    }


def render(rows: list[dict[str, Any]], caption: str) -> str:
    lines = [
        "# Login flood",
        "",
        caption,
        "",
        "| transport | flood from | flood sent | deposits ok / failed | p50 ms | p99 ms | max ms "
        "| new login s (tries) | SIGTERM exit s | targets met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        met = verdicts(row)
        login = "failed" if row["new_login_s"] is None else f"{row['new_login_s']:.2f}"
        lines.append(
            f"| {row['transport']} | {row['flood_host']} | {row['flood_sent']} "
            f"| {row['deposits_ok']} / "
            f"{row['deposits_failed']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} "
            f"| {login} ({row['login_tries']}) | {row['sigterm_exit_s']:.2f} "
            f"| {sum(met.values())}/4{'' if all(met.values()) else ' (' + _missed(met) + ')'} |"
        )
    lines += [
        "",
        "Server counters (from its `[STOPPED]` line):",
        "",
        "| transport | flood from | " + " | ".join(COUNTERS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in COUNTERS) + " |",
    ]
    for row in rows:
        values = " | ".join(str(row["server"][key]) for key in COUNTERS)
        lines.append(f"| {row['transport']} | {row['flood_host']} | {values} |")
    lines += [
        "",
        "Columns: *flood from*, the attacker's address (the clients use 127.0.0.1: a "
        "flood from there comes from the user's own host, as from behind the same NAT; "
        "login admission is per connection or UDP port); *flood sent*, logins of "
        "unknown accounts the attacker sent; *deposits*, "
        "one every 100 ms by a client logged in before the flood (latency of each call, "
        "retries included); *new login*, seconds until a client arriving 3 s into the "
        "deposits was logged in, and its tries; *SIGTERM exit*, seconds from SIGTERM "
        "(under the flood) to the server's exit. Targets: no deposit fails, p99 < 250 ms, "
        "new login < 2 s, SIGTERM < 2 s.",
        "",
    ]
    return "\n".join(lines)


def _missed(met: dict[str, bool]) -> str:
    return ", ".join(name for name, ok in met.items() if not ok) + " missed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.bench.login_flood",
        description="A bank under a flood of logins of unknown accounts (see module doc).",
    )
    parser.add_argument("--transports", default="udp,tcp", help="default: udp,tcp")
    parser.add_argument("--rate", type=float, default=400.0, help="logins/s (default 400)")
    parser.add_argument("--seconds", type=float, default=10.0, help="of deposits (default 10)")
    parser.add_argument(
        "--flood-hosts",
        default="127.0.0.2,127.0.0.1",
        help="the attacker's loopback addresses, one run each (default 127.0.0.2,127.0.0.1)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/runs/<time>/")
    args = parser.parse_args(argv)
    transports = [t for t in args.transports.split(",") if t]
    if not transports or any(t not in ("udp", "tcp") for t in transports):
        parser.error(f"--transports: choose from udp, tcp (got {args.transports!r})")
    if not (0 < args.rate <= 5000 and 1 <= args.seconds <= 30):
        parser.error("--rate must be in (0, 5000] and --seconds in [1, 30]")
    hosts = [h for h in args.flood_hosts.split(",") if h]
    if not hosts or not all(h.startswith("127.") for h in hosts):
        parser.error("--flood-hosts must be loopback addresses (127.0.0.0/8)")
    try:
        check_writable(args.out or default_out())
    except ValueError as err:
        parser.error(str(err))
    cost = login_cost()
    rows = [measure(t, args.rate, args.seconds, h) for h in hosts for t in transports]
    caption = (
        f"{args.rate:g} logins/s of unknown accounts for "
        f"{RAMP:g} s + {args.seconds:g} s of deposits + until SIGTERM; the clients on "
        f"{HOST}; server defaults (`python -m services serve bank`); {environment()}, "
        "shared with other work. One login (scrypt) in process before the runs: "
        f"median {cost['login_median_ms']:g} ms, max {cost['login_max_ms']:g} ms of 20."
    )
    markdown = render(rows, caption)
    print(markdown)
    record = {
        "caption": caption,
        "login_cost": cost,
        "rows": rows,
        "verdicts": [verdicts(r) for r in rows],
    }
    write_results(args.out or default_out(), "login_flood", record, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
