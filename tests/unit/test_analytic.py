"""Unit tests for experiments.analytic: the DP against closed forms and brute force."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.analytic import SEMANTICS, Prediction, agrees, binomial_bounds, main, predict
from transports.semantics import Semantics

RETRYING = ("at-least-once", "at-most-once", "exactly-once")
PROBS = (0.0, 0.01, 0.1, 0.3, 0.5, 0.9, 1.0)
KS = (*range(1, 9), 20)
TOL = 1e-12


def geometric_sum(x: float, k: int) -> float:
    return sum(x**i for i in range(k))


def assert_close(got: Prediction, want: Prediction, tol: float = TOL) -> None:
    for key, value in want.to_dict().items():
        assert got.to_dict()[key] == pytest.approx(value, abs=tol), key


# --------------------------------------------------------------------------- brute force


@dataclass
class _Server:
    """The four server behaviours, written out directly (independent of the DP)."""

    semantics: str
    applied: int = 0
    cache: dict[str, bool] = field(default_factory=dict)  # at-most-once: id -> reply ok?
    stored: set[str] = field(default_factory=set)  # exactly-once: idempotency keys

    def handle(self, request_id: str, app_fails: bool) -> bool:
        """Handle one arriving copy; return whether the reply is ok."""
        if self.semantics == "at-most-once":
            if request_id in self.cache:
                return self.cache[request_id]
            ok = self._execute(app_fails)
            self.cache[request_id] = ok
            return ok
        if self.semantics == "exactly-once":
            if request_id in self.stored:
                return True
            ok = self._execute(app_fails)
            if ok:
                self.stored.add(request_id)
            return ok
        return self._execute(app_fails)  # maybe, at-least-once

    def _execute(self, app_fails: bool) -> bool:
        if app_fails:
            return False
        self.applied += 1
        return True


def brute_force(semantics: str, p: float, k: int, a: float, q: float) -> Prediction:
    """Enumerate all 8^K per-attempt draws (request lost?, app fails?, reply lost?).

    Every draw is made for every attempt whether or not it is used; unused
    draws marginalise out, so the weighted sum is exact.
    """
    k = 1 if semantics == "maybe" else k
    totals = dict.fromkeys(Prediction.__dataclass_fields__, 0.0)
    for draws in itertools.product(itertools.product((True, False), repeat=3), repeat=k):
        weight = 1.0
        for req_lost, app_fails, reply_lost in draws:
            weight *= (p if req_lost else 1 - p) * (a if app_fails else 1 - a)
            weight *= q if reply_lost else 1 - q
        if weight == 0.0:
            continue
        server = _Server(semantics)
        outcome, sent = "unknown", 0
        for req_lost, app_fails, reply_lost in draws:
            sent += 1
            if req_lost:
                continue
            reply_ok = server.handle("req-1", app_fails)
            if not reply_lost:
                outcome = "ok" if reply_ok else "failed"
                break
        totals[outcome] += weight
        totals["executions"] += weight * server.applied
        totals["duplicated"] += weight * (server.applied >= 2)
        totals["phantom"] += weight * (server.applied >= 1 and outcome != "ok")
        totals["lost"] += weight * (server.applied == 0 and outcome == "ok")
        totals["attempts"] += weight * sent
    return Prediction(**totals)


@pytest.mark.parametrize("semantics", SEMANTICS)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("p", "q", "a"),
    [(0.1, 0.1, 0.0), (0.3, 0.3, 0.2), (0.2, 0.5, 0.1), (0.5, 0.05, 0.5), (0.0, 0.4, 0.3)],
)
def test_dp_matches_brute_force(semantics: str, k: int, p: float, q: float, a: float) -> None:
    got = predict(semantics, p, k, app_fail=a, reply_loss=q)
    assert_close(got, brute_force(semantics, p, k, a, q))


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("semantics", SEMANTICS)
def test_no_loss_is_one_clean_attempt(semantics: str) -> None:
    for k in (1, 2, 5):
        got = predict(semantics, 0.0, k)
        assert (got.ok, got.failed, got.unknown) == (1.0, 0.0, 0.0)
        assert (got.attempts, got.executions, got.duplicated, got.phantom) == (1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("semantics", RETRYING)
@pytest.mark.parametrize("p", PROBS)
@pytest.mark.parametrize("k", KS)
def test_closed_forms_without_app_failure(semantics: str, p: float, k: int) -> None:
    got = predict(semantics, p, k)
    s = (1 - p) ** 2
    attempts = geometric_sum(1 - s, k)
    assert got.ok == pytest.approx(1 - (1 - s) ** k, abs=TOL)
    assert got.unknown == pytest.approx((1 - s) ** k, abs=TOL)
    assert got.failed == 0.0
    assert got.attempts == pytest.approx(attempts, abs=TOL)
    assert got.phantom == pytest.approx((1 - s) ** k - p**k, abs=TOL)
    assert got.lost == 0.0
    if semantics == "at-least-once":
        assert got.executions == pytest.approx((1 - p) * attempts, abs=TOL)
        dup = p * (1 - p**k) - k * p * (1 - p) * p ** (k - 1)
        assert got.duplicated == pytest.approx(dup, abs=TOL)
    else:
        assert got.executions == pytest.approx(1 - p**k, abs=TOL)
        assert got.duplicated == 0.0


@pytest.mark.parametrize("p", PROBS)
@pytest.mark.parametrize("q", (0.0, 0.2, 0.7, 1.0))
@pytest.mark.parametrize("a", (0.0, 0.1, 0.5, 1.0))
@pytest.mark.parametrize("k", (1, 2, 3, 7))
def test_closed_forms_with_app_failure_and_asymmetric_loss(
    p: float, q: float, a: float, k: int
) -> None:
    # at-least-once: attempts are independent; n = P(an attempt gets no reply).
    alo = predict("at-least-once", p, k, app_fail=a, reply_loss=q)
    n = p + (1 - p) * q
    attempts = geometric_sum(n, k)
    assert alo.unknown == pytest.approx(n**k, abs=TOL)
    assert alo.ok == pytest.approx((1 - p) * (1 - q) * (1 - a) * attempts, abs=TOL)
    assert alo.failed == pytest.approx((1 - p) * (1 - q) * a * attempts, abs=TOL)
    assert alo.attempts == pytest.approx(attempts, abs=TOL)
    assert alo.executions == pytest.approx((1 - p) * (1 - a) * attempts, abs=TOL)

    # at-most-once: the first arriving attempt j decides the cached reply.
    amo = predict("at-most-once", p, k, app_fail=a, reply_loss=q)
    s = (1 - p) * (1 - q)
    replied = sum(p ** (j - 1) * (1 - p) * (1 - q * (1 - s) ** (k - j)) for j in range(1, k + 1))
    assert amo.ok == pytest.approx((1 - a) * replied, abs=TOL)
    assert amo.failed == pytest.approx(a * replied, abs=TOL)
    assert amo.executions == pytest.approx((1 - a) * (1 - p**k), abs=TOL)


def test_worked_example_in_analysis() -> None:
    got = predict("at-least-once", 0.1, 3)
    assert got.ok == pytest.approx(0.993141, abs=TOL)
    assert got.unknown == pytest.approx(0.006859, abs=TOL)
    assert got.attempts == pytest.approx(1.2261, abs=TOL)
    assert got.executions == pytest.approx(1.10349, abs=TOL)
    assert got.duplicated == pytest.approx(0.0972, abs=TOL)
    assert got.phantom == pytest.approx(0.005859, abs=TOL)


# --------------------------------------------------------------------------- invariants


@given(
    semantics=st.sampled_from(SEMANTICS),
    p=st.floats(0, 1),
    q=st.floats(0, 1),
    a=st.floats(0, 1),
    k=st.integers(1, 12),
)
def test_invariants(semantics: str, p: float, q: float, a: float, k: int) -> None:
    got = predict(semantics, p, k, app_fail=a, reply_loss=q)
    for key, value in got.to_dict().items():
        assert isinstance(value, float), key
    for value in (got.ok, got.failed, got.unknown, got.duplicated, got.phantom, got.lost):
        assert -TOL <= value <= 1 + TOL
    assert got.ok + got.failed + got.unknown == pytest.approx(1.0, abs=TOL)
    assert got.lost == 0.0
    assert got.phantom <= got.failed + got.unknown + TOL
    assert 1.0 <= got.attempts <= k + TOL
    assert got.executions <= got.attempts + TOL
    if semantics in ("at-most-once", "exactly-once", "maybe"):
        assert got.duplicated == 0.0
        assert got.executions <= 1.0 + TOL


@pytest.mark.parametrize("p", PROBS)
@pytest.mark.parametrize("a", (0.0, 0.3))
def test_maybe_is_any_semantics_with_one_attempt(p: float, a: float) -> None:
    maybe = predict("maybe", p, 1, app_fail=a)
    assert predict("maybe", p, 5, app_fail=a) == maybe  # K is forced to 1
    for semantics in RETRYING:
        assert_close(predict(semantics, p, 1, app_fail=a), maybe)


def test_semantics_names_match_transport() -> None:
    assert tuple(s.value for s in Semantics) == SEMANTICS


def test_to_dict_has_every_field() -> None:
    got = predict("exactly-once", 0.2, 3, app_fail=0.1).to_dict()
    assert list(got) == [
        "ok",
        "failed",
        "unknown",
        "executions",
        "duplicated",
        "phantom",
        "lost",
        "attempts",
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("at-least-twice", 0.1, 3), {}, "unknown semantics"),
        (("at-least-once", -0.1, 3), {}, "loss"),
        (("at-least-once", 1.5, 3), {}, "loss"),
        (("at-least-once", math.nan, 3), {}, "loss"),
        (("at-least-once", True, 3), {}, "loss"),
        (("at-least-once", 0.1, 0), {}, "max_attempts"),
        (("at-least-once", 0.1, 2.0), {}, "max_attempts"),
        (("at-least-once", 0.1, True), {}, "max_attempts"),
        (("at-least-once", 0.1, 3), {"app_fail": 1.01}, "app_fail"),
        (("at-least-once", 0.1, 3), {"reply_loss": -1e-9}, "reply_loss"),
    ],
)
def test_predict_rejects_bad_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        predict(*args, **kwargs)  # type: ignore[arg-type]


def test_main_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--loss", "0.1", "--max-attempts", "3", "--semantics", "at-least-once"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("at-least-once | 0.1 | 0.993141")


# --------------------------------------------------------------------------- agreement


def test_binomial_bounds() -> None:
    assert binomial_bounds(0.5, 100) == pytest.approx((0.3, 0.7))
    assert binomial_bounds(0.5, 100, z=2.0) == pytest.approx((0.4, 0.6))
    assert binomial_bounds(0.0, 10) == (0.0, 0.0)
    assert binomial_bounds(1.0, 10) == (1.0, 1.0)
    assert binomial_bounds(0.01, 10)[0] == 0.0  # clipped below
    assert binomial_bounds(0.99, 10)[1] == 1.0  # clipped above
    assert binomial_bounds(0.3, 1000, z=0.0) == (0.3, 0.3)


@pytest.mark.parametrize(
    ("p", "n", "z"),
    [(-0.1, 10, 4.0), (1.1, 10, 4.0), (math.nan, 10, 4.0), (0.5, 0, 4.0), (0.5, 10, -1.0)],
)
def test_binomial_bounds_rejects_bad_arguments(p: float, n: int, z: float) -> None:
    with pytest.raises(ValueError):
        binomial_bounds(p, n, z)


def test_agrees() -> None:
    # p = 0 and p = 1 are exact: no slack at all.
    assert agrees(0, 1000, 0.0)
    assert not agrees(1, 1000, 0.0)
    assert agrees(1000, 1000, 1.0)
    assert not agrees(999, 1000, 1.0)
    # 0.5 ± 4·0.05 on n = 100: [0.3, 0.7].
    assert agrees(50, 100, 0.5)
    assert agrees(31, 100, 0.5) and agrees(69, 100, 0.5)
    assert not agrees(29, 100, 0.5) and not agrees(71, 100, 0.5)
    assert agrees(0, 10, 0.01)  # the clipped interval still admits zero


@pytest.mark.parametrize(("count", "n"), [(-1, 10), (11, 10), (0, 0)])
def test_agrees_rejects_impossible_counts(count: int, n: int) -> None:
    with pytest.raises(ValueError):
        agrees(count, n, 0.5)
