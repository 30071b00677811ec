"""``python -m experiments.throughput``: the command line of ``experiments.bench.throughput``."""

from __future__ import annotations

import sys

from experiments.bench.throughput import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
