"""The verdict of ``experiments.compare`` on one cell of two runs, and on the whole.

The simulator is deterministic (virtual time, seeded faults): one of its
cells run again with the same code and settings gives the same counts, so any
difference is a change. A cell on real sockets varies with the machine's
timing; a count there is judged against binomial noise: the two runs agree
while they differ by at most 4 standard errors of the count (sqrt(n p (1 - p)),
p the mean fraction of the two, at least 1 operation).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

#: The counts a verdict looks at (latencies vary with the machine: shown, not judged).
JUDGED = ("ok", "failed", "unknown", "duplicated", "phantom", "lost")
SIGMAS = 4.0
VERDICT_MEANING = "same; within noise (real sockets: every count within 4 standard errors); differs"


class Verdict(enum.Enum):
    SAME = "same"
    NOISE = "within noise"
    DIFFERS = "differs"


def cell_verdict(a: Mapping[str, Any], b: Mapping[str, Any]) -> Verdict:
    """Whether cell ``b`` reproduces cell ``a`` (matched on transport, semantics, ...)."""
    counts = [(a.get(k), b.get(k)) for k in JUDGED if k in a or k in b]
    if all(x == y for x, y in counts):
        return Verdict.SAME
    if str(a.get("transport", "")).startswith("sim"):
        return Verdict.DIFFERS  # deterministic: any change is real
    n = _ops(a) or _ops(b)
    if n is None or any(not _close(x, y, n) for x, y in counts):
        return Verdict.DIFFERS
    return Verdict.NOISE


def _ops(cell: Mapping[str, Any]) -> int | None:
    ops = cell.get("ops")
    return ops if isinstance(ops, int) and ops > 0 else None


def _close(x: Any, y: Any, n: int) -> bool:
    if not isinstance(x, int | float) or not isinstance(y, int | float):
        return bool(x == y)
    p = min(max((x + y) / 2 / n, 0.0), 1.0)
    sigma = max(math.sqrt(n * p * (1 - p)), 1.0)
    return abs(x - y) <= SIGMAS * sigma


def summary(verdicts: Sequence[Verdict], only_a: Sequence[object], only_b: Sequence[object]) -> str:
    """The comparison's last line: the verdict on all matched cells."""
    counts = {v: sum(x is v for x in verdicts) for v in Verdict}
    unmatched = len(only_a) + len(only_b)
    tail = f"; {unmatched} cell(s) in one side only" if unmatched else ""
    if not verdicts:
        return f"VERDICT: nothing to compare (no cells in common{tail})"
    if counts[Verdict.DIFFERS]:
        return (
            f"VERDICT: DIFFERS: {counts[Verdict.DIFFERS]} of {len(verdicts)} cells differ "
            f"beyond run-to-run noise ({counts[Verdict.SAME]} same, "
            f"{counts[Verdict.NOISE]} within noise){tail}"
        )
    return (
        f"VERDICT: MATCHES: {counts[Verdict.SAME]} of {len(verdicts)} cells the same, "
        f"{counts[Verdict.NOISE]} within run-to-run noise{tail}"
    )
