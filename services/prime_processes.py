"""Primality tests of long numbers in worker processes, off the event loop.

A 400-digit prime takes ~30 ms of pure-Python arithmetic (Baillie-PSW), and a
server that tests it on its event loop answers nobody else meanwhile:
measured (``python -m experiments.long_checks``), one client checking such
primes cut four clients checking 10-digit numbers from 6,000-10,000 answers/s
to 120-260, at a median latency of 26-33 ms.
A worker thread would not help, since the test holds the GIL. So the numbers
server hands long numbers (``NumbersService.blocks``) to a worker thread,
which waits here for a process to test them; the event loop keeps answering.

``PrimeProcesses(n).is_prime`` is that wait. The processes start with the
server (forkserver where the platform has it: a fork of a process with
threads is unsafe), ignore SIGINT (Ctrl-C stops the server, which stops
them), and a pool whose worker died (killed, out of memory) is replaced for
the next call while this one is tested in the calling thread.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import threading
from concurrent.futures.process import BrokenProcessPool

from services.primes import is_probable_prime


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PrimeProcesses:
    """``processes`` worker processes that run ``is_probable_prime``."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("at least one prime process is needed")
        self.processes = processes
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self.replaced = 0  # pools replaced after a worker died
        # Start the processes now, not on the first long number.
        self._pool.submit(is_probable_prime, 2)

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            self.processes, mp_context=self._context, initializer=_ignore_sigint
        )

    @property
    def pids(self) -> list[int]:
        """The worker processes' pids (started so far)."""
        with self._lock:
            processes = getattr(self._pool, "_processes", None) or {}
        return sorted(processes)

    def is_prime(self, n: int) -> bool:
        """``is_probable_prime(n)``, computed in a worker process (blocks the caller)."""
        pool = self._pool
        try:
            return pool.submit(is_probable_prime, n).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = self._new_pool()
                    self.replaced += 1
            pool.shutdown(wait=False)
            return is_probable_prime(n)

    def close(self) -> None:
        """Stop the processes; calls after this raise ``RuntimeError``."""
        with self._lock:
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)
