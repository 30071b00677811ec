"""Tests of services.primes against references written independently here."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.primes import (
    DETERMINISTIC_LIMIT,
    MAX_DIGITS,
    check_digits,
    is_probable_prime,
    is_strong_lucas_probable_prime,
    is_strong_probable_prime,
)

# --- independent references ---------------------------------------------------

SIEVE_LIMIT = 100_000


def _sieve(limit: int) -> list[bool]:
    flags = [True] * limit
    flags[0] = flags[1] = False
    for i in range(2, math.isqrt(limit - 1) + 1):
        if flags[i]:
            for j in range(i * i, limit, i):
                flags[j] = False
    return flags


IS_PRIME_TABLE = _sieve(SIEVE_LIMIT)
SMALL_PRIMES = [i for i, flag in enumerate(IS_PRIME_TABLE) if flag]


def _modpow(base: int, exp: int, mod: int) -> int:
    """Right-to-left square-and-multiply; deliberately not the built-in pow()."""
    result, base = 1, base % mod
    while exp:
        if exp & 1:
            result = result * base % mod
        base = base * base % mod
        exp >>= 1
    return result


def _miller_witness(n: int, a: int) -> bool:
    """True if ``a`` proves odd ``n`` composite (searches the squaring chain upwards)."""
    a %= n
    if a == 0:
        return False
    e = n - 1
    while e % 2 == 0:
        e //= 2
    x = _modpow(a, e, n)
    if x == 1:
        return False
    while e < n - 1:
        if x == n - 1:
            return False
        x = x * x % n
        e *= 2
    return True


# Jim Sinclair's 7 bases: deterministic for all n < 2**64, a different set from
# the module's (first 12 primes), so agreement is not the same computation twice.
SINCLAIR_BASES = (2, 325, 9375, 28178, 450775, 9780504, 1795265022)


def reference_is_prime_64(n: int) -> bool:
    assert n < 2**64
    if n < SIEVE_LIMIT:
        return n >= 0 and IS_PRIME_TABLE[n]
    if any(n % p == 0 for p in SMALL_PRIMES[:25]):
        return False
    return not any(_miller_witness(n, a) for a in SINCLAIR_BASES)


def reference_probable_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    """Random-base Miller-Rabin: wrong with probability below 4**-rounds."""
    if n < SIEVE_LIMIT:
        return n >= 0 and IS_PRIME_TABLE[n]
    if n % 2 == 0:
        return False
    return not any(_miller_witness(n, rng.randrange(2, n - 1)) for _ in range(rounds))


# --- small numbers: exhaustive ------------------------------------------------


def test_matches_sieve_below_100000() -> None:
    mismatches = [n for n in range(SIEVE_LIMIT) if is_probable_prime(n) != IS_PRIME_TABLE[n]]
    assert mismatches == []


@pytest.mark.parametrize("n", [-(2**100), -7, -2, -1, 0, 1])
def test_below_two_is_never_prime(n: int) -> None:
    assert is_probable_prime(n) is False


def test_smallest_cases() -> None:
    assert [n for n in range(30) if is_probable_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]


# --- 64-bit range against the independent deterministic reference -----------------


def test_random_64bit_windows_match_reference() -> None:
    rng = random.Random(20240501)
    checked = primes = 0
    for _ in range(25):
        start = rng.randrange(2**32, 2**64 - 200)
        for n in range(start, start + 120):
            expected = reference_is_prime_64(n)
            assert is_probable_prime(n) == expected, n
            checked += 1
            primes += expected
    assert checked == 3000
    assert primes > 20  # the windows really contained primes


def test_largest_64bit_values() -> None:
    # 2**64 - 59 is the largest prime below 2**64.
    assert is_probable_prime(2**64 - 59)
    assert [n for n in range(2**64 - 100, 2**64) if is_probable_prime(n)] == [
        n for n in range(2**64 - 100, 2**64) if reference_is_prime_64(n)
    ]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_property_agrees_with_reference_64bit(n: int) -> None:
    assert is_probable_prime(n) == reference_is_prime_64(n)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2**20, max_value=2**63 - 1).map(lambda k: 2 * k + 1))
def test_property_odd_64bit_agrees_with_reference(n: int) -> None:
    assert is_probable_prime(n) == reference_is_prime_64(n)


# --- strong pseudoprimes and the Miller-Rabin thresholds ---------------------------

FIRST_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)

# psi_k (OEIS A014233): smallest strong pseudoprime to all of the first k prime bases.
PSI = [
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
]


@pytest.mark.parametrize(("n", "k"), PSI)
def test_strong_pseudoprimes_are_composite(n: int, k: int) -> None:
    # The number really fools Miller-Rabin with the first k prime bases...
    assert all(is_strong_probable_prime(n, a) for a in FIRST_PRIMES[:k])
    # ...is really composite (some small base is a witness)...
    assert any(_miller_witness(n, a) for a in range(2, 200))
    # ...and is still reported composite.
    assert is_probable_prime(n) is False


def test_psi13_is_the_deterministic_limit_and_composite() -> None:
    assert DETERMINISTIC_LIMIT == 3317044064679887385961981
    # Known factorisation of psi_13.
    assert DETERMINISTIC_LIMIT == 1287836182261 * 2575672364521
    assert is_probable_prime(1287836182261) and is_probable_prime(2575672364521)


@pytest.mark.parametrize("n", [561, 1105, 1729, 2465, 2821, 6601, 8911, 41041, 825265, 321197185])
def test_carmichael_numbers_are_composite(n: int) -> None:
    # Korselt: every Carmichael number is a Fermat liar to every coprime base.
    assert pow(2, n - 1, n) == 1 or n % 2 == 0
    assert is_probable_prime(n) is False


def _next_prime(n: int) -> int:
    while not is_probable_prime(n):
        n += 1
    return n


def test_large_chernick_carmichael_numbers_are_composite() -> None:
    # (6k+1)(12k+1)(18k+1) is a Carmichael number when all three factors are
    # prime; with k ~ 1e9 the product (~1.3e30) is beyond DETERMINISTIC_LIMIT.
    found: list[int] = []
    k = 10**9
    while len(found) < 3:
        a, b, c = 6 * k + 1, 12 * k + 1, 18 * k + 1
        if is_probable_prime(a) and is_probable_prime(b) and is_probable_prime(c):
            found.append(a * b * c)
        k += 1
    for n in found:
        assert n > DETERMINISTIC_LIMIT
        assert pow(2, n - 1, n) == 1  # fools the Fermat test
        assert is_probable_prime(n) is False


# --- large numbers: Baillie-PSW --------------------------------------------------

# Exponents p <= 1279 for which 2**p - 1 is prime.
MERSENNE_EXPONENTS = {2, 3, 5, 7, 13, 17, 19, 31, 61, 89, 107, 127, 521, 607, 1279}


@pytest.mark.parametrize("p", [61, 89, 127, 521, 607])
def test_known_large_primes(p: int) -> None:
    assert is_probable_prime(2**p - 1)


@pytest.mark.parametrize(
    "n",
    [
        (2**61 - 1) * (2**89 - 1),
        (2**89 - 1) ** 2,  # perfect square: Selfridge's method A would find no D
        (2**127 - 1) * (2**521 - 1),
        (2**61 - 1) * (2**61 - 1) * (2**61 - 1),
        2**67 - 1,
    ],
)
def test_known_large_composites(n: int) -> None:
    assert is_probable_prime(n) is False


def test_mersenne_67_factorisation() -> None:
    assert 193707721 * 761838257287 == 2**67 - 1
    assert is_probable_prime(193707721) and is_probable_prime(761838257287)
    assert is_probable_prime(2**67 - 1) is False


def test_mersenne_numbers() -> None:
    # Every 2**p - 1 with p prime is a strong base-2 pseudoprime, so for the
    # composite ones beyond DETERMINISTIC_LIMIT it is the Lucas half of BPSW
    # that must answer.
    # All prime exponents below 640, plus 1277 (M1277: composite, yet no factor
    # of it is known) and 1279 (prime).
    exponents = [p for p in range(2, 640) if IS_PRIME_TABLE[p]] + [1277, 1279]
    for p in exponents:
        m = 2**p - 1
        if p > 2:
            assert is_strong_probable_prime(m, 2)
        assert is_probable_prime(m) == (p in MERSENNE_EXPONENTS), p


@pytest.mark.parametrize("k", range(11))
def test_fermat_numbers(k: int) -> None:
    # F_k = 2**(2**k) + 1 is a strong base-2 pseudoprime; only F_0..F_4 are prime.
    f = 2 ** (2**k) + 1
    assert is_strong_probable_prime(f, 2)
    assert is_probable_prime(f) == (k <= 4)


def test_random_100_digit_windows_match_probabilistic_reference() -> None:
    rng = random.Random(7)
    primes = 0
    for _ in range(3):
        start = rng.randrange(10**99, 10**100) | 1
        for n in range(start, start + 400, 2):
            expected = reference_probable_prime(n, rng, rounds=8)
            assert is_probable_prime(n) == expected, n
            primes += expected
    assert primes >= 3


def test_around_the_deterministic_limit() -> None:
    rng = random.Random(3)
    for n in range(DETERMINISTIC_LIMIT - 300, DETERMINISTIC_LIMIT + 300):
        if n == DETERMINISTIC_LIMIT:
            continue  # the reference (random bases) would also reject it; covered above
        assert is_probable_prime(n) == reference_probable_prime(n, rng, rounds=8), n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=2, max_value=2**90), st.integers(min_value=2, max_value=2**90))
def test_property_products_are_composite(p: int, q: int) -> None:
    assert is_probable_prime(p * q) is False


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=2**30, max_value=2**100), st.integers(min_value=2**30, max_value=2**100)
)
def test_property_products_of_large_primes_are_composite(a: int, b: int) -> None:
    # Products of two primes have no small factor, so they reach Miller-Rabin
    # (or BPSW above DETERMINISTIC_LIMIT) rather than trial division.
    p, q = _next_prime(a), _next_prime(b)
    assert is_probable_prime(p) and is_probable_prime(q)
    assert is_probable_prime(p * q) is False


# --- the building blocks ---------------------------------------------------------

# OEIS A217255: strong Lucas pseudoprimes (Selfridge method A) below 100000.
STRONG_LUCAS_PSEUDOPRIMES = [5459, 5777, 10877, 16109, 18971, 22499, 24569, 25199, 40309]
STRONG_LUCAS_PSEUDOPRIMES += [58519, 75077, 97439]


def test_strong_lucas_exhaustive_below_100000() -> None:
    passing_composites = []
    for n in range(SIEVE_LIMIT):
        passes = is_strong_lucas_probable_prime(n)
        if IS_PRIME_TABLE[n]:
            assert passes, n  # no prime is ever rejected
        elif passes:
            passing_composites.append(n)
    assert passing_composites == STRONG_LUCAS_PSEUDOPRIMES


@pytest.mark.parametrize("n", STRONG_LUCAS_PSEUDOPRIMES)
def test_strong_lucas_pseudoprimes_are_composite(n: int) -> None:
    assert is_probable_prime(n) is False


def test_strong_probable_prime_helper() -> None:
    assert is_strong_probable_prime(2047, 2)
    assert not is_strong_probable_prime(2047, 3)
    assert is_strong_probable_prime(97, 5)
    assert is_strong_probable_prime(15, 15)  # base = 0 mod n: no information
    for bad in (-3, 0, 1, 2, 4, 100):
        with pytest.raises(ValueError):
            is_strong_probable_prime(bad, 2)


def test_check_digits_boundary() -> None:
    check_digits(0)
    check_digits(10**MAX_DIGITS - 1)
    check_digits(-(10**MAX_DIGITS - 1))
    for too_big in (10**MAX_DIGITS, -(10**MAX_DIGITS), 10**5000):
        with pytest.raises(ValueError, match=f"more than {MAX_DIGITS} digits"):
            check_digits(too_big)
