"""Shared test set-up: Hypothesis profiles (deterministic in CI); Ctrl-C reaches children."""

import os
import signal

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=200)
# A longer search (tests/property/budget.py: ten times the examples): not derandomized,
# so each run tries new examples; failures are kept in .hypothesis/ and replayed first.
settings.register_profile(
    "long", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Tests press Ctrl-C (SIGINT) at servers, clients and tools they start, as a
# user at a terminal would. A suite started in the background by a
# non-interactive shell (`pytest ... &`) inherits SIGINT *ignored*, exec keeps
# that, and Python then never raises KeyboardInterrupt: the children would sleep
# through every Ctrl-C. A handler (unlike "ignore") is reset to the default at
# exec, so the children see SIGINT as at a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
