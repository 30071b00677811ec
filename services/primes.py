"""Primality testing for the numbers service (pure functions, no I/O).

``is_probable_prime(n)`` is defined for every int and answers in two regimes:

* ``n < 3317044064679887385961981`` (about 3.3e24, so every 64-bit number and
  more): the answer is *proven correct*. Trial division by the primes below
  1000 (one ``gcd`` against their product) settles small numbers and most
  composites; the rest get a strong Miller-Rabin test to the first ``k`` prime
  bases, which is deterministic below the smallest strong pseudoprime to those
  bases (OEIS A014233; Jaeschke 1993, Zhang & Tang 2003, Sorenson & Webster
  2015). ``k`` is chosen from that table, at most 12 below 3.18e23 (covers
  2**64) and 13 (bases 2..41) below 3.3e24.
* larger ``n``: the Baillie-PSW test, i.e. a strong base-2 Miller-Rabin test
  plus a strong Lucas probable-prime test with Selfridge's method A parameters
  (after rejecting perfect squares, for which method A would find no ``D``).
  A ``True`` here is "probably prime": no composite passing BPSW is known
  (every n < 2**64 has been checked; none is known above either), but it is
  not proven that none exists. ``False`` is always correct.

The cost grows roughly with the cube of the bit length, so callers facing
untrusted input must bound it first: ``check_digits`` enforces ``MAX_DIGITS``
(the numbers service rejects anything larger).
"""

from __future__ import annotations

import math

#: Largest accepted input, in decimal digits (sign excluded); see ``check_digits``.
MAX_DIGITS = 400  # a 400-digit prime takes ~20 ms: bounded work per request
# 10**MAX_DIGITS, precomputed: comparing magnitudes is exact and avoids str(n),
# which is quadratic and refuses ints above sys.get_int_max_str_digits().
_DIGITS_LIMIT = 10**MAX_DIGITS

_TRIAL_LIMIT = 1000


def _primes_below(limit: int) -> list[int]:
    """Sieve of Eratosthenes; only used once at import for the trial divisors."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, math.isqrt(limit - 1) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit, p)))
    return [i for i, is_p in enumerate(sieve) if is_p]


_SMALL_PRIMES: tuple[int, ...] = tuple(_primes_below(_TRIAL_LIMIT))
_SMALL_PRIME_SET = frozenset(_SMALL_PRIMES)
# One gcd against the product of all small primes replaces 168 Python-level
# modulo operations: far cheaper for the 64-bit case that must take microseconds.
_SMALL_PRIMORIAL = math.prod(_SMALL_PRIMES)
# Without a factor below 1000, any n below 1000**2 is prime.
_TRIAL_PROVES_BELOW = _TRIAL_LIMIT * _TRIAL_LIMIT

_MR_BASES: tuple[int, ...] = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
# (psi_k, k): strong Miller-Rabin to the first k prime bases is exact for n < psi_k,
# where psi_k is the smallest strong pseudoprime to all of them (OEIS A014233).
_MR_THRESHOLDS: tuple[tuple[int, int], ...] = (
    (2047, 1),
    (1373653, 2),
    (25326001, 3),
    (3215031751, 4),
    (2152302898747, 5),
    (3474749660383, 6),
    (341550071728321, 8),
    (3825123056546413051, 11),
    (318665857834031151167461, 12),
    (3317044064679887385961981, 13),
)
# Jim Sinclair's 7 bases are deterministic for every n < 2**64 (verified
# exhaustively against Feitsma's list of base-2 pseudoprimes): fewer pow()
# calls than the first 12 prime bases for the common 64-bit case.
_SINCLAIR_BASES: tuple[int, ...] = (2, 325, 9375, 28178, 450775, 9780504, 1795265022)
#: Below this bound ``is_probable_prime`` is deterministic and proven; at and
#: above it, Baillie-PSW is used.
DETERMINISTIC_LIMIT = _MR_THRESHOLDS[-1][0]


def check_digits(n: int) -> None:
    """Raise ``ValueError`` if ``|n|`` has more than ``MAX_DIGITS`` decimal digits."""
    if abs(n) >= _DIGITS_LIMIT:
        raise ValueError(f"number has more than {MAX_DIGITS} digits")


def _strong_test(n: int, a: int, d: int, s: int) -> bool:
    """Strong probable-prime test to base ``a``, given ``n - 1 == d * 2**s``, d odd."""
    x = pow(a, d, n)
    if x == 1 or x == n - 1:
        return True
    for _ in range(s - 1):
        x = x * x % n
        if x == n - 1:
            return True
    return False


def _split_odd(m: int) -> tuple[int, int]:
    """Return ``(d, s)`` with ``m == d * 2**s`` and ``d`` odd (``m > 0``)."""
    s = (m & -m).bit_length() - 1
    return m >> s, s


def is_strong_probable_prime(n: int, base: int) -> bool:
    """Strong (Miller-Rabin) probable-prime test of odd ``n >= 3`` to ``base``.

    ``base`` is reduced modulo ``n``; a base that is 0, 1 or -1 modulo ``n``
    carries no information and yields ``True``. Raises ``ValueError`` for even
    or too small ``n``.
    """
    if n < 3 or n % 2 == 0:
        raise ValueError("n must be odd and at least 3")
    a = base % n
    if a in (0, 1, n - 1):
        return True
    d, s = _split_odd(n - 1)
    return _strong_test(n, a, d, s)


def _jacobi(a: int, n: int) -> int:
    """Jacobi symbol (a/n) for odd n > 0."""
    a %= n
    result = 1
    while a:
        while a % 2 == 0:
            a //= 2
            if n % 8 in (3, 5):
                result = -result
        a, n = n, a  # quadratic reciprocity
        if a % 4 == 3 and n % 4 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


def _is_square(n: int) -> bool:
    r = math.isqrt(n)
    return r * r == n


def is_strong_lucas_probable_prime(n: int) -> bool:
    """Strong Lucas probable-prime test with Selfridge's method A parameters.

    ``D`` is the first of 5, -7, 9, -11, ... with Jacobi symbol (D/n) = -1,
    ``P = 1`` and ``Q = (1 - D) / 4``. With ``n + 1 = d * 2**s`` (d odd), n
    passes if ``U_d == 0`` or ``V_(d * 2**r) == 0 (mod n)`` for some
    ``0 <= r < s``. Every prime passes; perfect squares and numbers sharing a
    factor with ``D`` are rejected outright. Defined for all ints.
    """
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    if _is_square(n):
        return False
    d_param = 5
    while True:
        j = _jacobi(d_param, n)
        if j == -1:
            break
        if j == 0:
            # gcd(|D|, n) > 1: n is composite unless it is |D| itself, which
            # can only happen for a prime (a composite non-square n would have
            # met its smallest prime factor earlier in the sequence).
            return n == abs(d_param)
        d_param = -d_param - 2 if d_param > 0 else -d_param + 2
    q = (1 - d_param) // 4
    return _strong_lucas(n, d_param, q)


def _half_mod(x: int, n: int) -> int:
    """x / 2 modulo odd n."""
    if x % 2:
        x += n
    return (x // 2) % n


def _strong_lucas(n: int, d_param: int, q: int) -> bool:
    """Strong Lucas test for P = 1 and the given D, Q (gcd(n, 2QD) = 1 assumed)."""
    d, s = _split_odd(n + 1)
    # D, Q and Q^k stay small signed ints while they can: a product with a small
    # int is cheap, whereas their residues mod n are as long as n. (Q = -1,
    # half of all cases, then costs nothing.)
    # Left-to-right binary ladder from k = 1: U_1 = 1, V_1 = P = 1, Q^1.
    u, v, qk = 1, 1, q
    for bit in bin(d)[3:]:
        # k -> 2k: U_2k = U_k V_k, V_2k = V_k^2 - 2 Q^k.
        u = u * v % n
        v = (v * v - 2 * qk) % n
        qk *= qk
        if qk >= n:
            qk %= n
        if bit == "1":
            # 2k -> 2k+1 with P = 1: U' = (U + V) / 2, V' = (D U + V) / 2.
            u, v = _half_mod(u + v, n), _half_mod(d_param * u + v, n)
            qk *= q
            if not -n < qk < n:
                qk %= n
    if u == 0 or v == 0:
        return True
    for _ in range(s - 1):
        v = (v * v - 2 * qk) % n
        if v == 0:
            return True
        qk *= qk
        if qk >= n:
            qk %= n
    return False


def is_probable_prime(n: int) -> bool:
    """Return whether ``n`` is prime; exact below ``DETERMINISTIC_LIMIT``.

    Below ``DETERMINISTIC_LIMIT`` (~3.3e24) the answer is proven correct
    (trial division, then deterministic Miller-Rabin). Above it this is the
    Baillie-PSW test: ``False`` is always right, ``True`` means "no known
    counterexample" rather than a proof. ``n < 2`` is never prime.
    """
    if n < 2:
        return False
    if n < _TRIAL_LIMIT:
        return n in _SMALL_PRIME_SET
    if math.gcd(n, _SMALL_PRIMORIAL) != 1:
        return False
    if n < _TRIAL_PROVES_BELOW:
        return True
    d, s = _split_odd(n - 1)
    if 2**64 > n >= 341550071728321:  # where Sinclair's set beats the prime bases
        return all(_strong_test(n, a, d, s) for a in _SINCLAIR_BASES)  # all bases < n here
    if n < DETERMINISTIC_LIMIT:
        bases = next(k for limit, k in _MR_THRESHOLDS if n < limit)
        return all(_strong_test(n, a, d, s) for a in _MR_BASES[:bases])
    # Baillie-PSW. The square check is inside the Lucas test (method A needs it).
    return _strong_test(n, 2, d, s) and is_strong_lucas_probable_prime(n)
