"""The report of ``python -m experiments.throughput``: its typed document, tables and plot.

``ThroughputReport`` holds every section a run measured (typed rows) beside
the config and environment; ``render`` lays them out as Markdown tables with
their captions, ``plot`` describes the throughput and p99 figure. The
targets are judged in ``experiments.bench.targets``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.bench import fault_layer, long_checks
from experiments.bench.config import ThroughputConfig
from experiments.bench.fault_layer import CpuCost, InstructionCost
from experiments.bench.inprocess import PrimeTime, SimRate
from experiments.bench.labels import SEED_FRAMING
from experiments.bench.long_checks import LongCheck, LongCheckSettings
from experiments.bench.measure import Paired, RoundTrip, TransportPair
from experiments.bench.targets import Target
from experiments.framework.plots import Panel, Plot, Series
from experiments.framework.tables import Column, field_columns, table

CEILINGS = ("echo", "echo-uvloop", "seed")  # dashed in the plot


@dataclass(frozen=True)
class ThroughputReport:
    """Everything one run measured; the JSON's sections in their order."""

    config: ThroughputConfig
    environment: Mapping[str, Any]
    round_trips: Sequence[RoundTrip]
    tcp_vs_udp: Sequence[TransportPair] = ()
    one_client_paired: Sequence[Paired] = ()
    server_counters: Mapping[str, str] = field(default_factory=dict)  # the [STOPPED] lines
    sim: Sequence[SimRate] = ()
    long_checks: Sequence[LongCheck] = ()
    long_checks_settings: LongCheckSettings | None = None
    primes: Sequence[PrimeTime] = ()
    fault_layer_cpu: Sequence[CpuCost] = ()
    fault_layer_instructions: Sequence[InstructionCost] | None = None  # None: not counted
    targets: Sequence[Target] = ()
    seconds: float = 0.0  # wall-clock time of the run

    def sections(self) -> dict[str, Any]:
        """The JSON's keys after parameters and environment."""
        skip = ("config", "environment")
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in skip}


ROUND_TRIP_COLUMNS: tuple[Column[RoundTrip], ...] = (
    Column("transport", lambda r: r.transport),
    Column("server", lambda r: r.server),
    Column("clients", lambda r: r.clients),
    Column("round trips/s", lambda r: r.rate),
    Column("p50 us", lambda r: r.p50_us),
    Column("p99 us", lambda r: r.p99_us),
    Column("max us", lambda r: r.max_us),
    Column("/ echo", lambda r: r.vs_echo),
    Column("/ seed", lambda r: r.vs_seed),
    Column("server CPU us/req", lambda r: r.cpu_us),
    Column("lost", lambda r: r.lost),
    Column("bad", lambda r: r.bad),
)
FAULT_COLUMNS: tuple[Column[RoundTrip], ...] = (
    Column("transport", lambda r: r.transport),
    Column("clients", lambda r: r.clients),
    Column("round trips/s", lambda r: r.rate),
    Column("ratio", lambda r: r.vs_text),
)
PAIRED_COLUMNS: tuple[Column[Paired], ...] = (
    Column("transport", lambda r: r.transport),
    Column("server", lambda r: r.server),
    Column("pairs", lambda r: r.pairs),
    Column("echo rt/s", lambda r: r.echo_rate),
    Column("rt/s", lambda r: r.rate),
    Column("median", lambda r: r.median),
    Column("p25", lambda r: r.p25),
    Column("p75", lambda r: r.p75),
)


def render(report: ThroughputReport) -> str:
    env, cfg = report.environment, report.config
    parts = [
        f"Round trips: {cfg.rounds} alternating rounds of {cfg.seconds} s (after "
        f"{cfg.warmup} s warm-up) per server and client count; clients are closed loops "
        f"on asyncio callbacks in one client process, one connection/socket each; every "
        f"server in its own process. Python {env['python']}, {env['platform']}, "
        f"{env['cpus']} CPUs. Requests: text.convert('hello world'), numbers.check('2147483647'), "
        f"bank.deposit(amount 1, exactly-once); echo and seed peers get text. "
        f"text xN: the text server as N processes sharing the port (serve --workers N); "
        f"text uvloop: on uvloop (serve --loop uvloop); "
        f"'{SEED_FRAMING}': our server speaking the lab's protocol (serve --framing seed). "
        f"Server CPU us/req: the server processes' CPU time from /proc over each window "
        f"(warm-up and drain included) per request sent, median over rounds.",
        table(report.round_trips, ROUND_TRIP_COLUMNS, tablefmt="github"),
    ]
    parts += _render_tcp_vs_udp(report.tcp_vs_udp)
    parts += _render_paired(report.one_client_paired)
    fault = [r for r in report.round_trips if r.vs_text is not None]
    if fault:
        parts.append(
            "Fault layer, every probability zero, as a ratio to the same server "
            "without it (median of per-round ratios):"
        )
        parts.append(table(fault, FAULT_COLUMNS, tablefmt="github", floatfmt="g"))
    if report.fault_layer_cpu:
        parts.append(
            "Fault layer, server path of one text.convert request in process (no sockets; "
            "experiments/bench/fault_layer.py): CPU, best of 15 alternating batches of 2000:"
        )
        headers = ["transport", "without us", "with us", "ratio"]
        parts.append(_all_fields(report.fault_layer_cpu, CpuCost, headers))
    if report.fault_layer_instructions:
        parts.append(
            "... and instructions per request counted by valgrind (callgrind): "
            f"{fault_layer.LARGE} minus {fault_layer.SMALL} requests, less building them; "
            "unmoved by the machine's load:"
        )
        headers = ["transport", "without instructions", "with instructions", "ratio"]
        parts.append(_all_fields(report.fault_layer_instructions, InstructionCost, headers))
    if report.sim:
        parts.append(
            "Simulator (virtual time, real codec, Call, ServerEndpoint; 8 clients; best of rounds):"
        )
        parts.append(_all_fields(report.sim, SimRate, ["workload", "ops", "ops/s", "target"]))
    if report.long_checks and report.long_checks_settings is not None:
        settings = report.long_checks_settings
        parts.append(long_checks.caption(settings.rounds, settings.seconds) + ":")
        parts.append(long_checks.render(report.long_checks))
    if report.primes:
        parts.append("Numbers service, prime check (best of 5 x 200 calls):")
        headers = ["number", "digits", "prime", "is_probable_prime us", "numbers.check us"]
        parts.append(_all_fields(report.primes, PrimeTime, headers))
    parts.append("Targets:")
    parts.append(_all_fields(report.targets, Target, ["target", "measured", "goal", "met"]))
    return "\n\n".join(parts)


def _all_fields(rows: Sequence[Any], cls: type[Any], headers: Sequence[str]) -> str:
    """Every field of ``rows`` (of type ``cls``) as a Markdown table."""
    return table(rows, field_columns(cls, headers), tablefmt="github", floatfmt="g")


def _render_tcp_vs_udp(rows: Sequence[TransportPair]) -> list[str]:
    """The "TCP against UDP" caption and table (nothing without rows)."""
    if not rows:
        return []
    caption = (
        "TCP against UDP, the same server and client count (from the table above; both "
        "measured in every round): UDP / TCP is the median of per-round ratios of round "
        "trips/s, above 1 where UDP is faster. No loss here: what each transport costs "
        "when nothing goes wrong (results/retries.md shows what loss does)."
    )
    headers = ["server", "clients", "TCP rt/s", "UDP rt/s", "UDP / TCP", "TCP p99 us", "UDP p99 us"]
    floatfmt = ("", "", ".0f", ".0f", ".3f", ".0f", ".0f")
    columns = field_columns(TransportPair, headers)
    return [caption, table(rows, columns, tablefmt="github", floatfmt=floatfmt)]


def _render_paired(rows: Sequence[Paired]) -> list[str]:
    """The "One client, paired with echo" caption and table (nothing without rows)."""
    if not rows:
        return []
    first = rows[0]
    caption = (
        f"One client, paired with echo: one closed-loop client alternates between echo and "
        f"ours in adjacent {first.window_s} s windows (each after {first.warmup_s} s "
        f"warm-up on a fresh connection/socket), ABBA-ordered (echo, ours, ours, echo, ...) "
        f"so linear drift cancels; ratio ours/echo per pair, median and inter-quartile range "
        f"over pairs (rates: medians over windows). The one-client targets use these: met "
        f"when the 25th percentile reaches the goal, not met when the 75th falls short, "
        f"open otherwise. A low echo rate flags a contended machine, on which every round "
        f"trip's fixed costs grow and the ratio moves towards 1."
    )
    floatfmt = ("", "", "", ".0f", ".0f", ".3f", ".3f", ".3f")
    return [caption, table(rows, PAIRED_COLUMNS, tablefmt="github", floatfmt=floatfmt)]


def plot(report: ThroughputReport) -> Plot:
    """Throughput (top row) and p99 latency (bottom row) against clients, per transport."""
    rows = report.round_trips
    transports = sorted({r.transport for r in rows})
    panels: list[list[Panel]] = [[], []]
    for t in transports:
        servers = dict.fromkeys(r.server for r in rows if r.transport == t)
        lines = {
            label: sorted((r for r in rows if (r.transport, r.server) == (t, label)),
                          key=lambda r: r.clients)
            for label in servers
        }  # fmt: skip

        def series(value: str, lines: dict[str, list[RoundTrip]] = lines) -> list[Series]:
            return [
                Series(label, [r.clients for r in group], [getattr(r, value) for r in group],
                       "o--" if label in CEILINGS else "o-")
                for label, group in lines.items()
            ]  # fmt: skip

        panels[0].append(
            Panel(f"{t}: throughput against concurrent clients", "concurrent clients",
                  "round trips / s", series("rate"), xlog=2, grid=True, legend_size=7)
        )  # fmt: skip
        panels[1].append(
            Panel(f"{t}: p99 against concurrent clients", "concurrent clients",
                  "p99 latency (us)", series("p99_us"), xlog=2, ylog=True, grid=True,
                  legend_size=7)
        )  # fmt: skip
    return Plot(panels, (6 * len(transports), 9))
