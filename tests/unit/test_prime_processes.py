"""PrimeProcesses: primality tests in worker processes (real processes)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from services.prime_processes import PrimeProcesses
from services.primes import is_probable_prime

LONG_PRIME = 10**99 + 289
NUMBERS = [2, 4, 2**61 - 1, LONG_PRIME, LONG_PRIME * 3, -7, 0]


@pytest.fixture
def primes() -> Iterator[PrimeProcesses]:
    processes = PrimeProcesses(1)
    try:
        yield processes
    finally:
        processes.close()


def wait_for_exit(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid):
        assert time.monotonic() < deadline, f"process {pid} did not exit"
        time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_answers_as_the_function_does(primes: PrimeProcesses) -> None:
    assert [primes.is_prime(n) for n in NUMBERS] == [is_probable_prime(n) for n in NUMBERS]
    (pid,) = primes.pids
    assert pid != os.getpid()


def test_a_dead_worker_is_replaced_and_the_call_still_answered(primes: PrimeProcesses) -> None:
    assert primes.is_prime(LONG_PRIME)
    (old,) = primes.pids
    os.kill(old, signal.SIGKILL)  # a process this test's fixture started
    wait_for_exit(old)
    assert primes.is_prime(LONG_PRIME)  # tested in this thread, the pool replaced
    assert primes.replaced == 1
    assert not primes.is_prime(LONG_PRIME * 3)  # by the new pool
    assert primes.pids and old not in primes.pids


def test_workers_ignore_ctrl_c(primes: PrimeProcesses) -> None:
    primes.is_prime(3)
    (pid,) = primes.pids
    os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    assert primes.is_prime(LONG_PRIME)
    assert primes.pids == [pid] and primes.replaced == 0


def test_refuses_work_after_close() -> None:
    processes = PrimeProcesses(1)
    processes.close()
    with pytest.raises(RuntimeError):
        processes.is_prime(LONG_PRIME)


def test_needs_a_process() -> None:
    with pytest.raises(ValueError, match="at least one"):
        PrimeProcesses(0)
