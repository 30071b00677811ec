"""Run Hypothesis over a ``SearchSpace`` until a schedule breaks a property; keep the shrunk one.

Role: the search loop, outside any test runner. ``find`` wraps the caller's
check in a ``@given`` property that raises when the check reports a
violation, runs it, and returns the last failing example Hypothesis tried
(it replays the shrunk one last) with Hypothesis's own report, or None with
the number of examples tried when nothing broke the property.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from transports.schedule import FaultSchedule

#: Deterministic whatever the profile, no example database. No explain phase:
#: it re-runs the failure ~10x to annotate the report.
SEARCH = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
)

#: A check: the violation it found in one run (a sentence), or None.
Check = Callable[[int, FaultSchedule], str | None]


class Violation(Exception):
    """Raised inside the property when a schedule breaks it."""


@dataclass(frozen=True)
class Found:
    """What a search saw: the shrunk counterexample (if any) and how many examples ran."""

    clients: int | None
    schedule: FaultSchedule | None
    message: str | None  # the check's sentence for the shrunk example
    runs: int  # runs of the check, shrinking included
    report: str  # Hypothesis's notes ("Falsifying example: ...")


def find(
    check: Check,
    schedules: st.SearchStrategy[FaultSchedule],
    clients: st.SearchStrategy[int],
    *,
    max_examples: int,
    seed_value: int | None = None,
) -> Found:
    """Search for a (clients, schedule) that ``check`` reports; None fields if none broke it.

    ``seed_value`` None: derandomized (Hypothesis's fixed seed for this
    property); an int: that seed. Either way the same call gives the same answer.
    """
    runs = 0
    failures: list[tuple[int, FaultSchedule, str]] = []

    def prop(clients: int, schedule: FaultSchedule) -> None:
        nonlocal runs
        runs += 1
        message = check(clients, schedule)
        if message is not None:
            failures.append((clients, schedule, message))
            raise Violation(message)

    chosen = settings(SEARCH, max_examples=max_examples, derandomize=seed_value is None)
    test = chosen(given(clients=clients, schedule=schedules)(prop))
    if seed_value is not None:
        test = seed(seed_value)(test)
    try:
        test()
    except Violation as err:
        clients_found, schedule, message = failures[-1]
        report = "\n".join(getattr(err, "__notes__", []))
        return Found(clients_found, schedule, message, runs, report)
    return Found(None, None, None, runs, "")


@contextmanager
def scratch_storage() -> Iterator[None]:
    """Hypothesis's files (its constants cache) in a temporary directory, not ./.hypothesis.

    A search keeps nothing between runs: its seed reproduces it.
    """
    with tempfile.TemporaryDirectory(prefix="search-hypothesis-") as home:
        set_hypothesis_home_dir(home)
        try:
            yield
        finally:
            set_hypothesis_home_dir(None)
