"""Server crashes in the simulator: where a crash strikes, and a seeded random policy."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable


class CrashPoint(enum.Enum):
    """Where in handling a request the server crashes."""

    BEFORE_APPLY = "before"  # on arrival: the restarted server handles the request
    AFTER_APPLY = "after"  # the change is committed, the reply is lost


#: Maps a request arrival number (0, 1, ... over all clients) to a crash, or None.
CrashPolicy = Callable[[int], CrashPoint | None]


def random_crashes(rate: float, seed: int) -> CrashPolicy:
    """Crash on each arrival with probability ``rate``, before or after apply 50/50.

    Two draws per arrival, always (common random numbers, as ``FaultLink``):
    a higher rate crashes at a superset of the arrivals of a lower one.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"crash rate must be in [0, 1], got {rate}")
    rng = random.Random(f"{seed}/server/crash")

    def crash_at(_arrival: int) -> CrashPoint | None:
        u_crash, u_point = rng.random(), rng.random()
        if u_crash >= rate:
            return None
        return CrashPoint.BEFORE_APPLY if u_point < 0.5 else CrashPoint.AFTER_APPLY

    return crash_at
