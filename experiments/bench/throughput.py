"""``python -m experiments.throughput``: throughput, latency and scaling against ceilings.

Sequential request/response round trips per second and latency percentiles for
each transport (tcp, udp) and service (text, numbers, bank), with 1, 4, 64 and
512 concurrent clients, beside, in the same run and driven by the same client:

* ``echo``: a minimal asyncio echo server (the ceiling), and ``echo-uvloop``
  when uvloop is installed (the optional ``bench`` extra: pip install -e .[bench]);
* ``seed``: the lab's design, a thread per connection and a 64-byte header;
* ``text+faults0``: our text server with a fault link on every message and
  every probability zero, to price the fault layer;
* ``text xN``: our text server as N processes sharing the port
  (``serve --workers N``, SO_REUSEPORT; ``--workers``, default 2), the
  multi-core configuration beside the default single process.

Clients: one client process (this one), N concurrent closed-loop clients on
asyncio Protocol callbacks, each with its own connection (TCP) or socket (UDP)
and one request outstanding (``experiments.bench.load.drive``). Every server
runs in its own process. Rounds alternate between servers, so drift on a
shared machine hits all alike; a rate is the median over rounds, a ratio the
median of per-round ratios, latencies pool all rounds.

The one-client target (ours / echo) is judged on a paired measurement
instead (``experiments.bench.measure.measure_paired``): within a round, echo's
window and ours can be seconds apart, and on a shared machine the per-round
ratio moves by more than the gap to the target. So one client (the same
``drive``) alternates between echo and one text configuration of ours in
short adjacent windows (``--pairs`` pairs of ``--pair-seconds`` each after
``--pair-warmup``), ABBA-ordered (echo, ours, ours, echo, ...) so that a
linear drift favours neither; each pair gives a ratio, reported as the median
and inter-quartile range over pairs.

Also: the simulator's logical operations per second (bank deposits and
withdrawals through the real codec, ``Call`` and ``ServerEndpoint``), the
numbers service's prime check time for 64-bit and 100-digit numbers (both in
process: ``experiments.bench.inprocess``), and short numbers checks
beside a client checking 400-digit primes (``experiments.bench.long_checks``).
Writes results/throughput.{json,md,png}.

Where things are: this module runs the whole (``main``); the command line and
its frozen config are in ``experiments.bench.config``; the servers are started,
measured and summarised in ``experiments.bench.measure``; the targets are
judged in ``experiments.bench.targets``; the tables and the plot are in
``experiments.bench.report``; the names they share in ``experiments.bench.labels``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from experiments.bench import fault_layer, long_checks
from experiments.bench.config import ThroughputConfig, build_parser, config
from experiments.bench.inprocess import prime_times, sim_rates
from experiments.bench.measure import (
    add_fault_ratios,
    measure,
    measure_paired,
    start_servers,
    summarise,
    transport_comparison,
)
from experiments.bench.peers import stop_peer, uvloop_available
from experiments.bench.report import ThroughputReport, plot, render
from experiments.bench.targets import targets
from experiments.framework.options import environment, error, parameters
from experiments.framework.results import Results, write_results


def run(cfg: ThroughputConfig) -> ThroughputReport:
    """Start the servers, measure everything ``cfg`` asks for, judge the targets."""
    started = time.perf_counter()
    uvloop = uvloop_available() and not cfg.no_uvloop
    peers = start_servers(cfg.transports, cfg.services, uvloop, cfg.workers)
    try:
        samples = measure(peers, cfg.clients, cfg)
        paired = measure_paired(peers, cfg) if cfg.pairs and 1 in cfg.clients else []
    finally:
        for p in peers:
            stop_peer(p)
    rows = add_fault_ratios(summarise(samples), samples)
    settings = cfg.long_checks
    mixed = []
    if "numbers" in cfg.services:
        mixed = long_checks.measure(cfg.transports, settings.rounds, settings.seconds)
    sim = sim_rates(cfg.sim_ops, 1 if cfg.quick else 2)
    primes = prime_times(50 if cfg.quick else 200)
    cpu = fault_layer.cpu_cost()
    instructions = fault_layer.instruction_cost() if cfg.instructions else None
    return ThroughputReport(
        config=cfg,
        environment={**environment(), "uvloop": uvloop},
        round_trips=rows,
        tcp_vs_udp=transport_comparison(rows, samples),
        one_client_paired=paired,
        server_counters={f"{p.transport}/{p.label}": p.stopped for p in peers if p.stopped},
        sim=sim,
        long_checks=mixed,
        long_checks_settings=settings,
        primes=primes,
        fault_layer_cpu=cpu,
        fault_layer_instructions=instructions,
        targets=targets(rows, sim, cpu, instructions or (), paired),
        seconds=round(time.perf_counter() - started, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config(build_parser().parse_args(argv))
    except ValueError as err:
        return error(err)
    report = run(cfg)
    text = render(report)
    print(text)
    results = Results(
        parameters(cfg),
        report.environment,
        report.sections(),
        text,
        title="Throughput",
        plot=None if cfg.no_plot else plot(report),
    )
    written = write_results(cfg.out, cfg.name, results)
    print(f"\n{report.seconds} s; wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
