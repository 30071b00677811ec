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
    BACKEND,
    KernelRecord,
    KernelRun,
    kernel_record,
    run_kernel_cell,
)

__all__ = ["KernelRecord", "KernelRun", "build_parser", "kernel_record", "main", "run_kernel_cell"]


def build_parser() -> argparse.ArgumentParser:
    p = retries.build_parser()
    p.prog = "python -m experiments.kernel"
    p.description = (
        "The retries experiment with real kernel packet loss between two network "
        "namespaces (root, Linux, nftables or iptables). Options as experiments.retries."
    )
    p.set_defaults(transports=["tcp", "udp"], name="retries_kernel", fault_backend=BACKEND)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.kernel``: ``experiments.retries --fault-backend kernel``."""
    try:
        cfg = retries.config(build_parser().parse_args(argv))
    except ValueError as err:
        return error(err)
    return execute(retries.kernel_experiment(), cfg)


if __name__ == "__main__":
    sys.exit(main())
