"""``python -m experiments.fault_layer``: the command line of ``experiments.bench.fault_layer``."""

from __future__ import annotations

import sys

from experiments.bench.fault_layer import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
