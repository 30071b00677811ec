"""The throughput benchmark's pure parts: workloads, summaries, targets, report (no sockets).

Nothing here times anything: the numbers are made up, only the arithmetic and
the plumbing are checked.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from experiments.bench import labels, measure, report, targets
from experiments.bench.config import ThroughputConfig, build_parser, config
from experiments.bench.inprocess import PrimeTime, SimRate
from experiments.bench.load import Sample, _Client, _Run, abba_order
from experiments.bench.long_checks import LongCheck, LongCheckSettings
from experiments.bench.measure import Paired, RoundTrip
from experiments.bench.workloads import TEXT, Workload, seed_workload, service_workload
from experiments.framework.plots import save
from services import text
from transports.framing import LengthPrefixDecoder, SeedDecoder
from transports.wire import Reply, decode_request, encode_reply


def sample(rate: float, clients: int = 1, lost: int = 0) -> Sample:
    seconds = 1.0
    return Sample(clients, seconds, [1e-4 * (i + 1) for i in range(int(rate))], lost)


SAMPLES: dict[tuple[str, str, int], list[Sample]] = {
    ("tcp", "echo", 1): [sample(100), sample(110)],
    ("tcp", "seed", 1): [sample(50), sample(50)],
    ("tcp", "text", 1): [sample(90), sample(88)],
    ("tcp", "text+faults0", 1): [sample(90), sample(80)],
    ("tcp", "echo", 512): [sample(200, 512), sample(200, 512)],
    ("tcp", "seed", 512): [sample(60, 512), sample(60, 512)],
    ("tcp", "text", 512): [sample(80, 512), sample(80, 512)],
    ("tcp", "text+faults0", 512): [sample(80, 512), sample(80, 512)],
}


def rows() -> list[RoundTrip]:
    return measure.add_fault_ratios(measure.summarise(SAMPLES), SAMPLES)


def test_summary_rates_ratios_and_percentiles() -> None:
    by = {(r.server, r.clients): r for r in rows()}
    text1 = by["text", 1]
    assert text1.rate == 89.0  # median of the rounds
    assert text1.vs_echo == pytest.approx(statistics_median([0.9, 0.8]), abs=1e-3)
    assert text1.vs_seed == pytest.approx(statistics_median([1.8, 1.76]), abs=1e-3)
    assert text1.p50_us <= text1.p99_us <= text1.max_us
    assert by["echo", 1].vs_echo == 1.0
    assert by["text+faults0", 1].vs_text == pytest.approx(
        statistics_median([1.0, 80 / 88]), abs=1e-3
    )


def test_tcp_against_udp_pairs_rounds_of_the_same_server() -> None:
    samples = {
        **SAMPLES,
        ("udp", "text", 1): [sample(45), sample(176)],  # rounds: 0.5 and 2.0 of TCP's
        ("udp", "echo", 512): [sample(300, 512), sample(100, 512)],
    }
    summary = measure.add_fault_ratios(measure.summarise(samples), samples)
    compared = measure.transport_comparison(summary, samples)
    assert [(r.server, r.clients) for r in compared] == [("echo", 512), ("text", 1)]
    text1 = compared[1]
    assert text1.tcp_rate == 89.0 and text1.udp_rate == 110.5
    assert text1.udp_vs_tcp == pytest.approx(statistics_median([45 / 90, 176 / 88]), abs=1e-3)
    assert compared[0].udp_vs_tcp == pytest.approx(statistics_median([1.5, 0.5]), abs=1e-3)
    out = report.render(dataclasses.replace(report_for(summary), tcp_vs_udp=compared))
    assert "TCP against UDP" in out and "| text     |         1 |" in out


def statistics_median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def test_targets_are_judged_against_their_goals() -> None:
    sim = [SimRate(workload="bank", ops=10, ops_per_s=60_000, target=50_000)]
    judged = {t.target.split(" (")[0]: t for t in targets.targets(rows(), sim)}
    assert judged["tcp text, 1 client / echo"].met is True  # 0.85 >= 0.8
    assert judged["tcp text / seed, worst over clients"].met is True
    collapse = judged["tcp text, 512 clients / best"]
    assert collapse.measured == pytest.approx(80 / 89, abs=1e-3) and collapse.met
    fault = judged["tcp zero-probability fault layer cost, round trips"]
    cost = 1 - statistics_median([statistics_median([1.0, 80 / 88]), 1.0])
    assert fault.measured == pytest.approx(cost, abs=2e-3) and fault.met
    assert judged["sim bank ops/s"].met is True


LONG_CHECKS_ROW = LongCheck(
    transport="tcp",
    long_checks_on="prime process",
    short_rate=6000,
    short_p50_us=500,
    short_p99_us=2000,
    short_max_us=5000,
    long_rate=28.0,
    short_alone_rate=8000,
    short_vs_alone=0.75,
    lost=0,
    bad=0,
)
ENVIRONMENT = {"python": "3.x", "platform": "test", "cpus": 2}


def small_config() -> ThroughputConfig:
    """The config of ``--rounds 2 --seconds 1.0 --warmup 0.1``."""
    return config(
        build_parser().parse_args(["--rounds", "2", "--seconds", "1.0", "--warmup", "0.1"])
    )


def report_for(round_trips: list[RoundTrip]) -> report.ThroughputReport:
    """A whole report around ``round_trips``, the other sections made up."""
    sim = [SimRate(workload="bank", ops=10, ops_per_s=5, target=50_000)]
    return report.ThroughputReport(
        config=small_config(),
        environment=ENVIRONMENT,
        round_trips=round_trips,
        sim=sim,
        primes=[PrimeTime(number="7", digits=1, prime=True, is_probable_prime_us=1.0,
                          numbers_check_us=2.0)],
        long_checks=[LONG_CHECKS_ROW],
        long_checks_settings=LongCheckSettings(rounds=2, seconds=1.0),
        targets=targets.targets(round_trips, sim),
    )  # fmt: skip


def test_render_and_files(tmp_path: Path) -> None:
    whole = report_for(rows())
    out = report.render(whole)
    for needle in ("round trips/s", "Fault layer", "Simulator", "prime check", "Targets"):
        assert needle in out
    assert "400-digit prime" in out and "| tcp         | prime process    |" in out
    pytest.importorskip("matplotlib")
    assert save(report.plot(whole), tmp_path / "t.png") == tmp_path / "t.png"
    assert (tmp_path / "t.png").stat().st_size > 0


@pytest.mark.parametrize("service", labels.SERVICES)
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_workloads_send_valid_requests(service: str, transport: str) -> None:
    load = service_workload(service, transport, token="t" * 32)
    first, token = load.message(0, 0)
    second, other = load.message(0, 1)
    assert token != other  # a late UDP reply never answers the next request
    for data in (first, second):
        if transport == "tcp":
            decoder = LengthPrefixDecoder()
            decoder.feed(data)
            data = decoder.next_message() or b""
        request = decode_request(data)
        assert f'"{request.id}"'.encode() in (token, other)
        reply = encode_reply(Reply.ok(request.id, request.attempt, {"x": 1}))
        assert load.check(reply)
    assert not load.check(encode_reply(Reply.error("x", 1, "BAD", "no")))


def test_seed_workload_speaks_the_lab_protocol() -> None:
    load = seed_workload()
    data, _ = load.message(3, 7)
    decoder = SeedDecoder()
    decoder.feed(data)
    assert decoder.next_message() == TEXT
    reply = text.seed_reply(TEXT).encode()
    assert load.reply_size == len(reply) and load.check(reply)


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def test_client_reassembles_split_replies_and_stays_closed_loop() -> None:
    reply = encode_reply(Reply.ok("q0", 1, {"lower": "a", "upper": "A"}))
    framed = len(reply).to_bytes(4, "big") + reply
    load = Workload("length", lambda c, s: (b"req", b""), lambda r: r == reply)
    run = _Run(load, clients=1, max_requests=3)
    run.measuring = True
    client = _Client(run, 0)
    client.connection_made(_Transport())  # type: ignore[arg-type]
    client.send_next()
    for cut in (1, 3, 9):  # the reply arrives in pieces
        client.data_received(framed[:cut])
        client.data_received(framed[cut:])
    assert len(run.latencies) == 3 and run.bad == 0
    assert run.sent == 3 and run.idle == 1  # max_requests bounds the loop
    assert client.transport.sent == [b"req"] * 3


def test_abba_order_alternates_who_goes_first() -> None:
    order = abba_order(4)
    assert order == [(0, 1), (1, 0), (0, 1), (1, 0)]
    flat = [i for pair in order for i in pair]
    assert flat == [0, 1, 1, 0, 0, 1, 1, 0]  # echo, ours, ours, echo, ...
    # Linear drift cancels: both peers' windows have the same mean position.
    assert sum(t for t, i in enumerate(flat) if i == 0) == sum(
        t for t, i in enumerate(flat) if i == 1
    )
    assert abba_order(0) == [] and abba_order(-1) == []
    assert abba_order(3) == [(0, 1), (1, 0), (0, 1)]  # bounded by the count asked


def test_pair_spread_gives_median_and_quartiles() -> None:
    median, p25, p75 = measure.pair_spread([0.9, 0.7, 0.8, 1.0, 0.6])
    assert (median, p25, p75) == pytest.approx((0.8, 0.7, 0.9))
    assert measure.pair_spread([0.8, 0.9]) == pytest.approx((0.85, 0.825, 0.875))
    assert measure.pair_spread([0.5]) == (0.5, 0.5, 0.5)
    assert measure.pair_spread([]) == (0.0, 0.0, 0.0)


def paired_row(label: str, ratios: list[float], transport: str = "tcp") -> Paired:
    pairs = [(sample(100), sample(100 * r)) for r in ratios]
    return measure.summarise_paired(transport, label, pairs, 0.1, 0.05)


def test_summarise_paired_uses_per_pair_ratios() -> None:
    # Drift: echo's rate halves over the run, ours tracks it at 0.8 of echo.
    pairs = [(sample(200), sample(160)), (sample(100), sample(80)), (sample(100), sample(0))]
    row = measure.summarise_paired("udp", "text", pairs, 0.1, 0.05)
    assert row.ratios == (0.8, 0.8, 0.0) and row.pairs == 3
    assert (row.median, row.p25, row.p75) == (0.8, 0.4, 0.8)
    assert row.echo_rate == 100.0 and row.rate == 80.0
    assert (row.window_s, row.warmup_s) == (0.1, 0.05)
    no_echo = measure.summarise_paired("udp", "text", [(sample(0), sample(5))], 0.1, 0.05)
    assert no_echo.pairs == 0 and no_echo.median == 0.0


def test_one_client_target_uses_paired_medians_default_then_best() -> None:
    paired = [
        paired_row("text", [0.70, 0.76, 0.74, 0.72, 0.78]),
        paired_row("text uvloop", [0.88, 0.82, 0.84, 0.80, 0.86]),
        paired_row("text x2", [0.6, 0.6]),
    ]
    judged = targets.targets(rows(), [], paired=paired)
    one = [t for t in judged if "1 client / echo" in t.target]
    assert [t.target for t in one] == [
        "tcp text, 1 client / echo (paired, 5 pairs, IQR 0.72-0.76; default, 1 process)",
        "tcp text uvloop, 1 client / echo "
        "(paired, 5 pairs, IQR 0.82-0.86; best of ours, 1 process on uvloop)",
    ]
    assert [(t.measured, t.met) for t in one] == [(0.74, False), (0.84, True)]
    # The default being the best: one row only, marked so.
    judged = targets.targets(rows(), [], paired=paired[:1])
    names = [t.target for t in judged if "1 client / echo" in t.target]
    assert names == [
        "tcp text, 1 client / echo (paired, 5 pairs, IQR 0.72-0.76; default, 1 process, "
        "best of ours)"
    ]


def test_render_shows_the_paired_table() -> None:
    whole = report.ThroughputReport(
        config=small_config(),
        environment=ENVIRONMENT,
        round_trips=rows(),
        one_client_paired=[paired_row("text", [0.8, 0.9])],
    )
    out = report.render(whole)
    assert "One client, paired with echo" in out and "ABBA" in out
    assert "| tcp" in out.split("One client, paired with echo")[1]
    whole = dataclasses.replace(whole, one_client_paired=[])
    assert "paired with echo" not in report.render(whole)


@pytest.mark.parametrize(
    ("ratios", "met"),
    [
        ([0.82, 0.85, 0.90, 0.81, 0.95], True),  # three pairs in four reach the goal
        ([0.60, 0.70, 0.75, 0.78, 0.79], False),  # three in four fall short
        ([0.65, 0.75, 0.85, 1.10, 1.20], None),  # the spread straddles it: cannot tell
    ],
)
def test_one_client_verdict_follows_the_spread_not_the_median(
    ratios: list[float], met: bool | None
) -> None:
    judged = targets.targets(rows(), [], paired=[paired_row("text", ratios)])
    (one,) = [t for t in judged if "1 client / echo" in t.target]
    assert one.met is met
