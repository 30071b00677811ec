"""Measuring the throughput benchmark's peers: rounds, pairs, and their typed summaries.

``start_servers`` starts every peer the run compares; ``measure`` drives each
with N closed-loop clients, ``rounds`` alternating rounds per client count
(the order shuffled by the seed), and ``summarise`` turns the samples into
``RoundTrip`` rows: median rate over rounds, latency percentiles over all
rounds, the median of per-round ratios to echo and to the lab's seed server,
the server's CPU per request. ``measure_paired`` judges one client against
echo in adjacent ABBA windows (``Paired`` rows); ``transport_comparison``
puts TCP beside UDP (``TransportPair`` rows).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from experiments.bench.config import ThroughputConfig
from experiments.bench.labels import CEILING, SEED_FRAMING, UVLOOP_TEXT, text_config, workers_label
from experiments.bench.load import Sample, drive, drive_paired
from experiments.bench.peers import Peer, cpu_seconds, start_peer
from experiments.bench.workloads import Workload, seed_workload, service_workload
from experiments.framework.records import OMIT_NONE, Record
from experiments.framework.tables import percentile
from transports.aio.client import RpcClient, open_channel
from transports.call import RetrySettings
from transports.retry import RetryPolicy

Samples = Mapping[tuple[str, str, int], list[Sample]]  # (transport, server label, clients)
#: The servers' order in the tables; the other text configurations come right after text.
ORDER = (CEILING, "echo-uvloop", "seed", SEED_FRAMING, "text", "text+faults0", "numbers", "bank")


@dataclass(frozen=True, kw_only=True)
class RoundTrip(Record):
    """One server at one client count, over every round."""

    transport: str
    server: str
    clients: int
    rate: float  # round trips/s, median over rounds
    p50_us: float
    p99_us: float
    max_us: float
    vs_echo: float | None  # median of per-round ratios to echo (same transport and clients)
    vs_seed: float | None  # ... to the lab's seed server (TCP)
    cpu_us: float | None  # server CPU per request sent, median over rounds
    lost: int
    bad: int
    rounds: tuple[float, ...]  # the rate of each round
    vs_text: float | None = field(default=None, metadata=OMIT_NONE)  # text+faults0 / text


@dataclass(frozen=True, kw_only=True)
class TransportPair(Record):
    """TCP beside UDP for one server and client count."""

    server: str
    clients: int
    tcp_rate: float
    udp_rate: float
    udp_vs_tcp: float  # median of per-round ratios
    tcp_p99_us: float
    udp_p99_us: float


@dataclass(frozen=True, kw_only=True)
class Paired(Record):
    """One text configuration of ours against echo, one client, in adjacent windows."""

    transport: str
    server: str
    pairs: int
    window_s: float
    warmup_s: float
    echo_rate: float
    rate: float
    median: float  # of the per-pair ratios ours / echo
    p25: float
    p75: float
    lost: int
    bad: int
    ratios: tuple[float, ...]


# --------------------------------------------------------------------------
# Servers and their workloads


def start_servers(
    transports: Sequence[str], services: Sequence[str], uvloop: bool, workers: int = 1
) -> list[Peer]:
    peers = []
    for t in transports:
        peers.append(start_peer(CEILING, "echo", t))
        if uvloop:
            peers.append(start_peer("echo-uvloop", "echo", t, loop="uvloop"))
        if t == "tcp":
            peers.append(start_peer("seed", "seed", t))
        peers += [start_peer(s, "ours", t, s) for s in services]
        if t == "tcp" and "text" in services:
            # The lab's protocol on our server: the seed's design against ours
            # with the same (tiny) work per request.
            peers.append(start_peer(SEED_FRAMING, "ours", t, "text", framing="seed"))
        if "text" in services:
            peers.append(start_peer("text+faults0", "ours", t, "text", fault_layer=True))
            if workers > 1:
                label = workers_label(workers)
                peers.append(start_peer(label, "ours", t, "text", workers=workers))
            if uvloop:
                peers.append(start_peer(UVLOOP_TEXT, "ours", t, "text", loop="uvloop"))
    return peers


async def _login(transport: str, port: int) -> str:
    settings = RetrySettings(RetryPolicy.from_name("fixed", timeout=5.0), max_attempts=3)
    client = RpcClient(open_channel(transport, "127.0.0.1", port), settings)
    try:
        result = await client.call("bank.login", {"account": 1, "pin": "1234"})
    finally:
        await client.close()
    token = result.result.get("token")
    if not isinstance(token, str):
        raise RuntimeError(f"bank login failed: {result.outcome} {result.error_code}")
    return token


def workload_for(peer: Peer) -> Workload:
    if peer.kind == "seed" or peer.framing == "seed":
        return seed_workload()
    if peer.kind == "echo":
        return service_workload("text", peer.transport, echo=True)
    token = asyncio.run(_login(peer.transport, peer.port)) if peer.service == "bank" else ""
    return service_workload(peer.service, peer.transport, token=token)


# --------------------------------------------------------------------------
# Measuring


def measure(
    peers: Sequence[Peer], clients: Sequence[int], cfg: ThroughputConfig
) -> dict[tuple[str, str, int], list[Sample]]:
    """Samples per (transport, label, clients): ``rounds`` of each, alternating."""
    loads = {id(p): workload_for(p) for p in peers}
    samples: dict[tuple[str, str, int], list[Sample]] = {}
    order = list(peers)
    rng = random.Random(cfg.seed)
    for n in clients:
        for _ in range(cfg.rounds):
            rng.shuffle(order)
            for p in order:
                cpu_before = cpu_seconds(p.process.pid)
                sample = asyncio.run(
                    drive(p.transport, p.port, loads[id(p)], n, seconds=cfg.seconds,
                          warmup=cfg.warmup)
                )  # fmt: skip
                sample = dataclasses.replace(
                    sample, server_cpu=cpu_seconds(p.process.pid) - cpu_before
                )
                samples.setdefault((p.transport, p.label, n), []).append(sample)
    return samples


def measure_paired(peers: Sequence[Peer], cfg: ThroughputConfig) -> list[Paired]:
    """The one-client ratio to echo of each text configuration of ours, paired.

    ``drive_paired`` against the echo peer of the same transport: adjacent
    windows see the same load, which the rounds of ``measure`` do not.
    """
    rows = []
    for echo in (p for p in peers if p.label == CEILING):
        reference = (echo.port, workload_for(echo))
        for p in peers:
            if p.transport != echo.transport or text_config(p.label) is None:
                continue
            pairs = asyncio.run(
                drive_paired(
                    p.transport,
                    reference,
                    (p.port, workload_for(p)),
                    pairs=cfg.pairs,
                    seconds=cfg.pair_seconds,
                    warmup=cfg.pair_warmup,
                )
            )
            rows.append(
                summarise_paired(p.transport, p.label, pairs, cfg.pair_seconds, cfg.pair_warmup)
            )
    return rows


# --------------------------------------------------------------------------
# Summaries


def pair_spread(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Median, 25th and 75th percentile of per-pair ratios (interpolated; 0s if none).

    The inter-quartile range shows how far one pair strays: a spread that
    straddles a target says the run cannot tell whether it is met.
    """
    if not ratios:
        return 0.0, 0.0, 0.0
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    p25, _, p75 = statistics.quantiles(ratios, n=4, method="inclusive")
    return statistics.median(ratios), p25, p75


def summarise_paired(
    transport: str,
    label: str,
    pairs: Sequence[tuple[Sample, Sample]],
    window: float,
    warmup: float,
) -> Paired:
    """One row of the paired table from (echo sample, our sample) per pair."""
    ratios = [ours.rate / echo.rate for echo, ours in pairs if echo.rate > 0]
    median, p25, p75 = pair_spread(ratios)
    return Paired(
        transport=transport,
        server=label,
        pairs=len(ratios),
        window_s=window,
        warmup_s=warmup,
        echo_rate=round(statistics.median(e.rate for e, _ in pairs), 1) if pairs else 0.0,
        rate=round(statistics.median(o.rate for _, o in pairs), 1) if pairs else 0.0,
        median=round(median, 3),
        p25=round(p25, 3),
        p75=round(p75, 3),
        lost=sum(e.lost + o.lost for e, o in pairs),
        bad=sum(e.bad + o.bad for e, o in pairs),
        ratios=tuple(round(r, 3) for r in ratios),
    )


def _paired(a: list[Sample], b: list[Sample]) -> float:
    ratios = [x.rate / y.rate for x, y in zip(a, b, strict=True) if y.rate > 0]
    return statistics.median(ratios) if ratios else 0.0


def _cpu_per_request(group: list[Sample]) -> float | None:
    """Median over rounds of the server's CPU µs per request sent (warm-up included).

    From /proc at 10 ms resolution: a steadier figure than a rate on a shared
    machine, since time the server spends waiting for the CPU does not count.
    """
    per_request = [s.server_cpu / s.sent * 1e6 for s in group if s.sent and s.server_cpu > 0]
    return round(statistics.median(per_request), 1) if per_request else None


def _rank(label: str) -> tuple[int, int]:
    if label in ORDER:
        return ORDER.index(label), 0
    if text_config(label):  # the other text configurations right after text
        return ORDER.index("text"), 1
    return len(ORDER), 0


def summarise(samples: Samples) -> list[RoundTrip]:
    """One row per (transport, server, clients), in table order."""
    rows = []
    for (transport, label, n), group in samples.items():
        us = sorted(x * 1e6 for s in group for x in s.latencies)
        echo = samples.get((transport, CEILING, n))
        seed = samples.get(("tcp", "seed", n))
        rows.append(
            RoundTrip(
                transport=transport,
                server=label,
                clients=n,
                rate=round(statistics.median(s.rate for s in group), 1),
                p50_us=round(percentile(us, 50), 1),
                p99_us=round(percentile(us, 99), 1),
                max_us=round(us[-1], 1) if us else 0.0,
                vs_echo=round(_paired(group, echo), 3) if echo else None,
                vs_seed=round(_paired(group, seed), 3) if seed else None,
                cpu_us=_cpu_per_request(group),
                lost=sum(s.lost for s in group),
                bad=sum(s.bad for s in group),
                rounds=tuple(round(s.rate, 1) for s in group),
            )
        )
    rows.sort(key=lambda r: (r.transport, _rank(r.server), r.clients))
    return rows


def transport_comparison(rows: Sequence[RoundTrip], samples: Samples) -> list[TransportPair]:
    """TCP beside UDP for every server and client count measured on both.

    Both transports' servers run in every round, so ``udp_vs_tcp`` is the
    median of per-round ratios, as ``vs_echo`` is; rates and p99 come from
    ``rows`` (``summarise``), in its order.
    """
    by_key = {(r.transport, r.server, r.clients): r for r in rows}
    out = []
    for r in rows:
        key = ("udp", r.server, r.clients)
        if r.transport != "tcp" or key not in by_key:
            continue
        udp = by_key[key]
        ratio = _paired(samples[key], samples[("tcp", r.server, r.clients)])
        out.append(
            TransportPair(
                server=r.server,
                clients=r.clients,
                tcp_rate=r.rate,
                udp_rate=udp.rate,
                udp_vs_tcp=round(ratio, 3),
                tcp_p99_us=r.p99_us,
                udp_p99_us=udp.p99_us,
            )
        )
    return out


def add_fault_ratios(rows: Sequence[RoundTrip], samples: Samples) -> list[RoundTrip]:
    """``rows`` with ``vs_text`` on the fault-layer rows: their ratio to the same server without."""
    out = []
    for r in rows:
        if r.server == "text+faults0":
            base = samples[(r.transport, "text", r.clients)]
            ratio = _paired(samples[(r.transport, r.server, r.clients)], base)
            r = dataclasses.replace(r, vs_text=round(ratio, 3))
        out.append(r)
    return out
