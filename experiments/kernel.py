"""``python -m experiments.kernel``: the retries experiment with real kernel faults.

The same as ``python -m experiments.retries --fault-backend kernel`` (same
options, cells, workload, audit and tables, plus ``--rate``: tc tbf), with
defaults of its own: tcp and udp, and results/retries_kernel.*. Records carry
``backend: kernel`` and the kernel's packet counters; compare two runs with
``experiments.compare``. The backend itself is ``experiments.kernel_backend``
(root, Linux).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from experiments import retries
from experiments.framework.experiment import execute
from experiments.framework.options import error
from experiments.kernel_backend import (
    KernelRecord,
    KernelRun,
    kernel_record,
    run_kernel_cell,
)

__all__ = ["KernelRecord", "KernelRun", "build_parser", "kernel_record", "main", "run_kernel_cell"]


def build_parser() -> argparse.ArgumentParser:
    return retries.build_parser(kernel=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.kernel``: ``experiments.retries --fault-backend kernel``."""
    try:
        cfg = retries.config(build_parser().parse_args(argv))
    except ValueError as err:
        return error(err)
    return execute(retries.kernel_experiment(), cfg)


if __name__ == "__main__":
    sys.exit(main())
