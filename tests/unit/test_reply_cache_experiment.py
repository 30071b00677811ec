"""The reply-cache experiment's claims, checked on small deterministic sim cells."""

from __future__ import annotations

from pathlib import Path

from experiments import reply_cache
from experiments.reply_cache import FOREVER, UNBOUNDED, CacheCell, run
from transports.semantics import Semantics

AMO, ALO = Semantics.AT_MOST_ONCE, Semantics.AT_LEAST_ONCE


def test_an_undersized_cache_lets_duplicates_back_in() -> None:
    small = run(CacheCell("capacity", AMO, 4, FOREVER, 0.0, 0.2), ops=200, clients=8, seed=3)
    large = run(CacheCell("capacity", AMO, UNBOUNDED, FOREVER, 0.0, 0.2), 200, 8, 3)
    assert small.audit.duplicated > 0 and small.evictions > 0
    assert large.audit.duplicated == 0 and large.evictions == 0
    assert small.audit.lost == large.audit.lost == 0


def test_a_short_lived_cache_lets_duplicates_back_in() -> None:
    short = run(CacheCell("retention", AMO, UNBOUNDED, 0.01, 0.0, 0.2), 200, 8, 3)
    assert short.audit.duplicated > 0


def test_slow_server_at_most_once_drops_in_progress_retries() -> None:
    amo = run(CacheCell("service", AMO, UNBOUNDED, FOREVER, 0.12, 0.0), 40, 4, 3)
    alo = run(CacheCell("service", ALO, UNBOUNDED, FOREVER, 0.12, 0.0), 40, 4, 3)
    assert amo.dropped_in_progress > 0 and amo.audit.duplicated == 0 and amo.audit.ok == 40
    assert alo.audit.duplicated == 40  # every retry that overtook the server executed again


def test_script_writes_its_results(tmp_path: Path) -> None:
    argv = ["--quick", "--ops", "40", "--clients", "4", "--no-progress", "--out", str(tmp_path)]
    assert reply_cache.main(argv) == 0
    for suffix in ("json", "csv", "md"):
        assert (tmp_path / f"reply_cache.{suffix}").stat().st_size > 0
