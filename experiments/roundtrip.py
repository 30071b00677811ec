"""``python -m experiments.roundtrip``: the command line of ``experiments.bench.roundtrip``.

Also the old import path of the benchmark's peers and load client
(``tests/integration/test_workers.py`` imports them from here); new code
imports ``experiments.bench.peers``, ``.workloads`` and ``.load``.
"""

from __future__ import annotations

import sys

from experiments.bench.load import drive
from experiments.bench.peers import start_peer, stop_peer
from experiments.bench.roundtrip import main
from experiments.bench.workloads import service_workload

__all__ = ["drive", "main", "service_workload", "start_peer", "stop_peer"]

if __name__ == "__main__":
    sys.exit(main())
