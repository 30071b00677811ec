"""How many examples a property test runs: its own count, ten times that under
the long profile (``HYPOTHESIS_PROFILE=long``, registered in tests/conftest.py).

Tests that set ``max_examples`` themselves take it from ``examples``, since an
explicit count overrides the profile's; the others get the profile's own.
"""

import os

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"


def examples(count: int) -> int:
    return count * 10 if LONG else count
