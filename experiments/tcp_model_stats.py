"""The statistics of ``python -m experiments.tcp_model``: kernel spreads and model verdicts.

Kernel runs are samples (the kernel's drops are not seeded), the model is one
deterministic number. For each compared count this module summarises the
kernel runs (``Spread``: mean, min, max, standard error of the mean) and
judges the model against them: it *matches* when it lies within
``[min - SE, max + SE]`` (``verdict``); ``miss`` says by how much it lies
outside. ``Comparison`` holds one count of one cell: the model (the stream
simulator), the optional second model (the real-socket TCP driver with the
in-process fault layer), the kernel spread and both verdicts. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from experiments.audit import Audit

#: The counts compared, in table order: the audit's field names.
COUNTS = ("ok", "unknown", "duplicated", "phantom", "attempts", "p50_ms", "p99_ms")
LATENCIES = frozenset({"p50_ms", "p99_ms"})


@dataclass(frozen=True)
class Spread:
    """Kernel runs of one count: how many, mean, min, max and the standard error of the mean.

    ``se`` is the sample standard deviation (n - 1) over sqrt(n); 0 for one run.
    """

    n: int
    mean: float
    min: float
    max: float
    se: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        if not values:
            raise ValueError("a spread needs at least one value")
        n = len(values)
        mean = math.fsum(values) / n
        if n == 1:
            se = 0.0
        else:
            variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
            se = math.sqrt(variance / n)
        return cls(n, mean, float(min(values)), float(max(values)), se)

    @property
    def low(self) -> float:
        """The lower end of the accepted band, ``min - SE``."""
        return self.min - self.se

    @property
    def high(self) -> float:
        """The upper end of the accepted band, ``max + SE``."""
        return self.max + self.se


def verdict(model: float | None, spread: Spread | None) -> bool | None:
    """Whether ``model`` lies within ``[min - SE, max + SE]``; None when either is missing."""
    if model is None or spread is None:
        return None
    return spread.low <= model <= spread.high


def miss(model: float | None, spread: Spread | None) -> float | None:
    """Signed distance from the band: positive above ``max + SE``, negative below, 0 inside."""
    if model is None or spread is None:
        return None
    if model > spread.high:
        return model - spread.high
    if model < spread.low:
        return model - spread.low
    return 0.0


def structural(semantics: str, count: str) -> bool:
    """A count the semantics fixes, whatever the network does (left out of the tallies).

    ``maybe`` sends every operation once (attempts = ops) and never twice
    (duplicated = 0); a server that deduplicates never applies one twice.
    """
    if semantics == "maybe":
        return count in ("attempts", "duplicated")
    if semantics in ("at-most-once", "exactly-once"):
        return count == "duplicated"
    return False


@dataclass(frozen=True)
class Comparison:
    """One count of one cell: both models, the kernel's spread and the verdicts."""

    count: str
    model: float
    model_tcp: float | None  # the real-socket TCP driver; None when not run
    kernel: Spread | None  # None without kernel runs
    match: bool | None  # the model within the band; None without kernel runs
    match_tcp: bool | None
    miss: float | None  # the model's signed distance from the band
    structural: bool  # fixed by the semantics (see ``structural``)


def compare(
    semantics: str, model: Audit, model_tcp: Audit | None, kernel: Sequence[Audit]
) -> dict[str, Comparison]:
    """Every count of ``COUNTS``: ``model`` (and ``model_tcp``) against the kernel runs."""
    out = {}
    for count in COUNTS:
        value = float(getattr(model, count))
        tcp = None if model_tcp is None else float(getattr(model_tcp, count))
        spread = Spread.of([float(getattr(a, count)) for a in kernel]) if kernel else None
        out[count] = Comparison(
            count=count,
            model=value,
            model_tcp=tcp,
            kernel=spread,
            match=verdict(value, spread),
            match_tcp=verdict(tcp, spread),
            miss=miss(value, spread),
            structural=structural(semantics, count),
        )
    return out


@dataclass(frozen=True)
class Tally:
    """Matches among compared counts (structural ones left out)."""

    matched: int = 0
    compared: int = 0

    def add(self, match: bool | None) -> Tally:
        if match is None:
            return self
        return Tally(self.matched + match, self.compared + 1)

    def __str__(self) -> str:
        return f"{self.matched}/{self.compared}" if self.compared else "-"


def tally(comparisons: Sequence[Comparison], *, tcp: bool = False) -> Tally:
    """How many of ``comparisons`` match (``tcp``: the TCP driver's verdicts)."""
    result = Tally()
    for c in comparisons:
        if not c.structural:
            result = result.add(c.match_tcp if tcp else c.match)
    return result
