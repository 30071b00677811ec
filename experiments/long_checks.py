"""``python -m experiments.long_checks``: the command line of ``experiments.bench.long_checks``."""

from __future__ import annotations

import sys

from experiments.bench.long_checks import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
