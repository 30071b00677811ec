"""Exact predictions for one retried, non-idempotent operation under message loss.

The model (derived and discussed in ``experiments/ANALYSIS.md``): a sequential
client makes up to ``K`` attempts of one logical operation (a deposit). On each
attempt the request is lost with probability ``p``; if it arrives, the server
handles it according to its call semantics, and the reply is lost with
probability ``q`` (``reply_loss``, default ``p``). An execution fails in the
application with probability ``a`` (``app_fail``): a definite error reply,
nothing applied. The client stops at the first reply it receives (ok or error)
and gives up, outcome ``unknown``, after ``K`` silent attempts. The timeout
exceeds the round trip, so no retry is spurious; there is no duplication and
no reordering. ``maybe`` forces ``K = 1``.

:func:`predict` computes the outcome probabilities and ledger effects exactly
with a dynamic program over attempts; its state is (applications so far,
capped at 2; what the server remembers about the request). No simulation.

Closed forms for ``a = 0`` (``s = (1-p)(1-q)``, one attempt's success), which the
tests check against the DP for every retrying semantics:

* ``P(ok) = 1 - (1-s)^K``, ``P(unknown) = (1-s)^K``, ``P(failed) = 0``
* ``E[attempts] = sum_{k=0}^{K-1} (1-s)^k``
* ``phantom = (1-s)^K - p^K`` (some request arrived, no reply did)
* at-least-once: ``E[executions] = (1-p) E[attempts]``,
  ``duplicated = q (1 - p^K) - K q (1-p) p^(K-1)``
* at-most-once and exactly-once: ``E[executions] = 1 - p^K``, ``duplicated = 0``

With ``a > 0`` (``n = p + (1-p) q``, one attempt gets no reply):

* at-least-once: ``P(ok) = (1-p)(1-q)(1-a) (1-n^K)/(1-n)``, ``P(unknown) = n^K``,
  ``E[executions] = (1-p)(1-a) E[attempts]`` with ``E[attempts] = sum_{k<K} n^k``
* at-most-once: the first arriving attempt decides; if it is attempt ``j``,
  ``P(no reply) = q (1-s)^(K-j)``, so
  ``P(ok) = (1-a) sum_{j=1}^{K} p^(j-1) (1-p) (1 - q (1-s)^(K-j))``

:func:`binomial_bounds` and :func:`agrees` say whether a measured count is
consistent with a predicted probability.
"""

from __future__ import annotations

import argparse
import enum
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from experiments.framework.options import add_list_option, experiment_parser, probability

__all__ = [
    "SEMANTICS",
    "Prediction",
    "agrees",
    "binomial_bounds",
    "main",
    "predict",
]

# Kept equal to transports.semantics.Semantics values (a unit test checks it);
# not imported so this module stays pure arithmetic with no transport imports.
SEMANTICS: tuple[str, ...] = ("maybe", "at-least-once", "at-most-once", "exactly-once")

_CAP = 2  # applications are counted 0, 1, 2+: enough for "duplicated" and "phantom"


@dataclass(frozen=True)
class Prediction:
    """Exact outcome probabilities and ledger effects of one logical operation."""

    ok: float  # P(outcome ok)
    failed: float  # P(outcome failed)
    unknown: float  # P(outcome unknown)
    executions: float  # E[number of times the op was applied to the ledger]
    duplicated: float  # P(applied >= 2 times)
    phantom: float  # P(applied >= 1 time AND outcome != ok)
    lost: float  # P(outcome ok AND applied 0 times): 0 under this model
    attempts: float  # E[attempts sent]

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


class _Memory(enum.Enum):
    """What the server remembers about this request id."""

    NONE = 0
    OK = 1  # at-most-once: cached ok reply; exactly-once: stored idempotency key
    FAILED = 2  # at-most-once only: cached error reply


# DP state: (applications so far, capped at _CAP; server memory).
_State = tuple[int, _Memory]


@dataclass(frozen=True)
class _Handling:
    """One possible server handling of an arriving request copy."""

    prob: float
    applied: bool  # the ledger changed (a successful execution)
    memory: _Memory  # server memory afterwards
    reply_ok: bool  # the reply it sends: ok (True) or error (False)


def _handle(semantics: str, memory: _Memory, a: float) -> list[_Handling]:
    """How the server answers an arriving copy, given what it remembers."""
    execute = [
        _Handling(1.0 - a, True, _Memory.NONE, True),
        _Handling(a, False, _Memory.NONE, False),
    ]
    if semantics in ("maybe", "at-least-once"):
        return execute  # no memory: every copy executes, with a fresh failure draw
    if semantics == "at-most-once":
        if memory is _Memory.OK:
            return [_Handling(1.0, False, memory, True)]
        if memory is _Memory.FAILED:
            return [_Handling(1.0, False, memory, False)]  # the cached failure is repeated
        return [
            _Handling(1.0 - a, True, _Memory.OK, True),
            _Handling(a, False, _Memory.FAILED, False),
        ]
    # exactly-once: only a success is stored (with the ledger change), so a copy
    # after a failure executes again.
    if memory is _Memory.OK:
        return [_Handling(1.0, False, memory, True)]
    return [
        _Handling(1.0 - a, True, _Memory.OK, True),
        _Handling(a, False, _Memory.NONE, False),
    ]


def _check_probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def predict(
    semantics: str,
    loss: float,
    max_attempts: int,
    *,
    app_fail: float = 0.0,
    reply_loss: float | None = None,
) -> Prediction:
    """Exact prediction for one logical operation; see the module docstring.

    ``loss`` is the request-loss probability ``p``, ``reply_loss`` the reply-loss
    probability ``q`` (default ``p``), ``app_fail`` the application-failure
    probability ``a`` per execution, ``max_attempts`` the attempt budget ``K``
    (ignored, i.e. taken as 1, for ``maybe``).
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"unknown semantics {semantics!r}; choose one of: {', '.join(SEMANTICS)}")
    p = _check_probability("loss", loss)
    q = p if reply_loss is None else _check_probability("reply_loss", reply_loss)
    a = _check_probability("app_fail", app_fail)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    k_max = 1 if semantics == "maybe" else max_attempts

    # Mass of the still-running op, by state, before the next attempt.
    active: dict[_State, float] = {(0, _Memory.NONE): 1.0}
    # Mass of finished ops by (outcome ok?, applications capped).
    ended: defaultdict[tuple[bool, int], float] = defaultdict(float)
    attempts = 0.0
    executions = 0.0  # by linearity: sum over attempts of P(this attempt applies it)

    for _ in range(k_max):
        attempts += math.fsum(active.values())
        nxt: defaultdict[_State, float] = defaultdict(float)
        for (applied, memory), mass in active.items():
            if mass == 0.0:
                continue
            nxt[(applied, memory)] += mass * p  # request lost: server unchanged
            for h in _handle(semantics, memory, a):
                m = mass * (1.0 - p) * h.prob
                if m == 0.0:
                    continue
                if h.applied:
                    executions += m
                count = min(applied + h.applied, _CAP)
                ended[(h.reply_ok, count)] += m * (1.0 - q)  # reply arrives: client stops
                nxt[(count, h.memory)] += m * q  # reply lost: client times out
        active = nxt

    unknown_by_count: defaultdict[int, float] = defaultdict(float)
    for (applied, _memory), mass in active.items():
        unknown_by_count[applied] += mass

    ok = math.fsum(m for (is_ok, _), m in ended.items() if is_ok)
    failed = math.fsum(m for (is_ok, _), m in ended.items() if not is_ok)
    unknown = math.fsum(unknown_by_count.values())
    duplicated = ended[(True, 2)] + ended[(False, 2)] + unknown_by_count[2]
    phantom = ended[(False, 1)] + ended[(False, 2)] + unknown_by_count[1] + unknown_by_count[2]
    return Prediction(
        ok=ok,
        failed=failed,
        unknown=unknown,
        executions=executions,
        duplicated=duplicated,
        phantom=phantom,
        lost=ended[(True, 0)],
        attempts=attempts,
    )


def binomial_bounds(p: float, n: int, z: float = 4.0) -> tuple[float, float]:
    """``p ± z·sqrt(p(1-p)/n)`` clipped to [0, 1]: where a rate measured on n trials may lie.

    The normal approximation; it is poor when ``n·p`` or ``n·(1-p)`` is small
    (say below 10), so a table should not lean on it there.
    """
    p = _check_probability("p", p)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not z >= 0.0 or math.isinf(z):
        raise ValueError(f"z must be a finite number >= 0, got {z!r}")
    half = z * math.sqrt(p * (1.0 - p) / n)
    return max(0.0, p - half), min(1.0, p + half)


def agrees(measured_count: int, n: int, p: float, z: float = 4.0) -> bool:
    """Does ``measured_count`` out of ``n`` agree with probability ``p``?

    ``p = 0`` and ``p = 1`` are exact claims (the interval has zero width), so
    they demand exactly 0 and exactly ``n``: one duplicate where the model says
    none is a real disagreement, not noise.
    """
    lo, hi = binomial_bounds(p, n, z)
    if isinstance(measured_count, bool) or not isinstance(measured_count, int):
        raise ValueError(f"measured_count must be an integer, got {measured_count!r}")
    if not 0 <= measured_count <= n:
        raise ValueError(f"measured_count must lie in [0, n={n}], got {measured_count}")
    if p == 0.0:
        return measured_count == 0
    if p == 1.0:
        return measured_count == n
    return lo <= measured_count / n <= hi


def build_parser() -> argparse.ArgumentParser:
    parser = experiment_parser(
        "experiments.analytic",
        "The analytic model's exact predictions for one retried deposit under independent "
        "message loss: the probability that it ends ok, failed or unknown, is applied "
        "twice, or is applied although the client saw failed or unknown.",
    )
    add_list_option(
        parser,
        "--semantics",
        choices=SEMANTICS,
        default="at-least-once,at-most-once",
        help="call semantics, a row each",
    )
    add_list_option(
        parser,
        "--loss",
        parse=probability,
        default="0.01,0.05,0.1,0.2,0.3",
        help="request loss probability, a row each",
    )
    parser.add_argument(
        "--max-attempts", type=int, default=5, metavar="N", help="attempts per operation (maybe: 1)"
    )
    parser.add_argument(
        "--app-fail",
        type=probability,
        default=0.0,
        metavar="P",
        help="probability that the server's application fails an execution",
    )
    parser.add_argument(
        "--reply-loss",
        type=probability,
        metavar="P",
        help="reply loss probability (default: the same as the request loss)",
    )
    return parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Print a table of predictions: ``python -m experiments.analytic --loss 0.1,0.2``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_attempts < 1:
        parser.error("--max-attempts must be at least 1")
    fields = list(Prediction.__dataclass_fields__)
    print(" | ".join(["semantics", "loss", *fields]))
    for sem in args.semantics:
        for p in args.loss:
            pred = predict(
                sem.strip(),
                p,
                args.max_attempts,
                app_fail=args.app_fail,
                reply_loss=args.reply_loss,
            )
            cells = [f"{v:.6g}" for v in pred.to_dict().values()]
            print(" | ".join([sem.strip(), f"{p:g}", *cells]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
