"""Tests of the numbers service (services.numbers)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.errors import InvalidArgument, UnknownOperation
from services.numbers import OFFLOAD_DIGITS, SPACES, NumbersService, seed_reply
from services.primes import MAX_DIGITS, is_probable_prime
from transports.service import CallContext

CTX = CallContext(request_id="req-1", now=0.0)


def check(n: Any) -> dict[str, Any]:
    return NumbersService().handle("numbers.check", {"n": n}, CTX)


def test_service_identity() -> None:
    service = NumbersService()
    assert service.name == "numbers"
    assert service.blocking_ops == frozenset()


# (input, prime, palindrome) from the lab's examples.
LAB_EXAMPLES = [
    ("121", False, True),
    ("10", False, False),
    ("22", False, True),
    ("30", False, False),
    ("99", False, True),
    ("23", True, False),
    ("12", False, False),
    ("11", True, True),
]


@pytest.mark.parametrize(("raw", "prime", "palindrome"), LAB_EXAMPLES)
def test_lab_examples(raw: str, prime: bool, palindrome: bool) -> None:
    assert check(raw) == {"n": raw, "prime": prime, "palindrome": palindrome, "digits": len(raw)}


@pytest.mark.parametrize(("raw", "prime", "palindrome"), LAB_EXAMPLES)
def test_seed_reply_lab_examples(raw: str, prime: bool, palindrome: bool) -> None:
    assert seed_reply(raw) == f"[Prime] {prime} [Palidrome] {palindrome}"


def test_seed_reply_exact_strings() -> None:
    assert seed_reply("11") == "[Prime] True [Palidrome] True"
    assert seed_reply("121") == "[Prime] False [Palidrome] True"
    assert seed_reply("23") == "[Prime] True [Palidrome] False"
    assert seed_reply(" 7 ") == "[Prime] True [Palidrome] True"


def test_seed_reply_errors() -> None:
    assert seed_reply("abc").startswith("[Error] argument 'n' must be a decimal integer")
    assert seed_reply("") == "[Error] argument 'n' is empty"
    assert seed_reply("1" * (MAX_DIGITS + 1)) == (
        f"[Error] argument 'n' has {MAX_DIGITS + 1} digits; the maximum is {MAX_DIGITS}"
    )


@pytest.mark.parametrize(
    ("raw", "canonical", "prime", "palindrome", "digits"),
    [
        ("0", "0", False, True, 1),
        ("1", "1", False, True, 1),
        ("2", "2", True, True, 1),
        ("9", "9", False, True, 1),
        ("-0", "0", False, True, 1),
        ("+0", "0", False, True, 1),
        ("-1", "-1", False, False, 1),
        ("-7", "-7", False, False, 1),  # -7 is not prime, nor a palindrome ("7-")
        ("-121", "-121", False, False, 3),
        ("+131", "131", True, True, 3),
        ("0110", "110", False, False, 3),  # leading zeros go first
        ("000", "0", False, True, 1),
        ("007", "7", True, True, 1),
        ("  11\n", "11", True, True, 2),
        ("\t-0011 ", "-11", False, False, 2),
    ],
)
def test_edge_values(raw: str, canonical: str, prime: bool, palindrome: bool, digits: int) -> None:
    assert check(raw) == {
        "n": canonical,
        "prime": prime,
        "palindrome": palindrome,
        "digits": digits,
    }


def test_big_values() -> None:
    mersenne = str(2**127 - 1)
    assert check(mersenne) == {"n": mersenne, "prime": True, "palindrome": False, "digits": 39}
    assert check("1" * 19)["palindrome"] is True  # repunit R19 is prime
    assert check("1" * 19)["prime"] is True
    assert check("1" * 20)["prime"] is False


def test_json_int_accepted() -> None:
    assert check(11) == {"n": "11", "prime": True, "palindrome": True, "digits": 2}
    assert check(-121) == {"n": "-121", "prime": False, "palindrome": False, "digits": 3}
    assert check(0) == {"n": "0", "prime": False, "palindrome": True, "digits": 1}
    assert check(2**89 - 1)["prime"] is True


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, None, [11], {"n": 11}, b"11"])
def test_wrong_types(value: object) -> None:
    with pytest.raises(InvalidArgument, match="must be a decimal integer string"):
        check(value)


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "12a",
        "1.5",
        "1.0",
        "1e5",
        "0x1F",
        "1_000",
        "1 000",
        "--5",
        "+-5",
        "-",
        "+",
        "- 5",
        "٣",  # Arabic-Indic three: int() accepts it, the service must not
        "١٢١",  # Arabic-Indic 121
        "\uff11\uff12",  # fullwidth digits
        "²",  # superscript two
        "12\x00",
        "inf",
        "NaN",
    ],
)
def test_invalid_strings(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="must be a decimal integer"):
        check(raw)


@pytest.mark.parametrize("raw", ["", "   ", "\n\t"])
def test_empty(raw: str) -> None:
    with pytest.raises(InvalidArgument, match="is empty"):
        check(raw)


def test_error_message_quotes_bounded_input() -> None:
    with pytest.raises(InvalidArgument) as info:
        check("x" * 10_000)
    assert len(info.value.message) < 200
    assert "10000 characters" in info.value.message


def test_max_digits_boundary() -> None:
    at_limit = "9" * MAX_DIGITS
    result = check(at_limit)
    assert result["digits"] == MAX_DIGITS
    assert result["palindrome"] is True
    assert result["prime"] is False  # divisible by 9
    assert check("-" + at_limit)["digits"] == MAX_DIGITS
    with pytest.raises(InvalidArgument, match=f"{MAX_DIGITS + 1} digits; the maximum"):
        check("1" + at_limit)
    with pytest.raises(InvalidArgument, match="digits; the maximum"):
        check("7" * 100_000)  # far past Python's int/str conversion limit too


def test_leading_zeros_do_not_count_towards_max_digits() -> None:
    assert check("0" * 5000 + "7") == {"n": "7", "prime": True, "palindrome": True, "digits": 1}


def test_max_digits_for_json_ints() -> None:
    assert check(10**MAX_DIGITS - 1)["digits"] == MAX_DIGITS
    for too_big in (10**MAX_DIGITS, -(10**MAX_DIGITS), 10**10_000):
        with pytest.raises(InvalidArgument, match=f"more than {MAX_DIGITS} digits"):
            check(too_big)


def test_missing_argument_and_bad_args() -> None:
    service = NumbersService()
    with pytest.raises(InvalidArgument, match="missing argument 'n'"):
        service.handle("numbers.check", {}, CTX)
    with pytest.raises(InvalidArgument, match="must be an object"):
        service.handle("numbers.check", ["11"], CTX)  # type: ignore[arg-type]


@pytest.mark.parametrize("op", ["numbers.prime", "check", "text.convert", ""])
def test_unknown_operation(op: str) -> None:
    with pytest.raises(UnknownOperation, match="unknown operation"):
        NumbersService().handle(op, {"n": "11"}, CTX)


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_property_int_and_string_agree(value: int) -> None:
    result = check(str(value))
    assert result == check(value)
    assert result["n"] == str(value)
    assert result["digits"] == len(str(abs(value)))
    assert result["palindrome"] == (value >= 0 and str(value) == str(value)[::-1])


@given(st.text(alphabet="0123456789", min_size=1, max_size=40), st.sampled_from(["", "+", "-"]))
def test_property_digit_strings(digits: str, sign: str) -> None:
    result = check(sign + digits)
    value = int(sign + digits)
    assert result["n"] == str(value)
    assert int(result["n"]) == value


@given(st.text(max_size=30))
def test_property_arbitrary_text_is_valid_or_invalid_argument(raw: str) -> None:
    # Never any other exception; accepted inputs are exactly sign + ASCII digits.
    try:
        result = check(raw)
    except InvalidArgument:
        stripped = raw.strip(SPACES)
        assert not (
            stripped.lstrip("+-").isascii()
            and stripped.lstrip("+-").isdigit()
            and len(stripped) - len(stripped.lstrip("+-")) <= 1
        )
    else:
        assert result["n"] == str(int(raw.strip(SPACES)))
        assert raw.strip(SPACES).isascii()


@given(st.integers(min_value=1, max_value=10**12))
def test_property_mirrored_numbers_are_palindromes(value: int) -> None:
    s = str(value)
    assert check(s + s[::-1])["palindrome"] is True
    assert check("-" + s + s[::-1])["palindrome"] is False


# -- long numbers, tested elsewhere (a server's PrimeProcesses) ---------------

LONG_PRIME = 10**99 + 289  # the smallest 100-digit prime
SHORT = "9" * OFFLOAD_DIGITS  # the longest number tested where it is called


class RecordingTest:
    """A stand-in for PrimeProcesses.is_prime that records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, n: int) -> bool:
        self.asked.append(n)
        return is_probable_prime(n)


def test_without_a_long_prime_test_nothing_blocks() -> None:
    service = NumbersService()
    assert service.blocking_ops == frozenset()
    assert not service.blocks("numbers.check", {"n": str(LONG_PRIME)})
    assert service.handle("numbers.check", {"n": str(LONG_PRIME)}, CTX)["prime"] is True


@pytest.mark.parametrize(
    ("n", "blocks"),
    [
        (str(LONG_PRIME), True),
        (LONG_PRIME, True),
        (10**OFFLOAD_DIGITS, True),  # 65 digits
        (SHORT, False),
        (int(SHORT), False),
        ("2147483647", False),
        (None, False),  # refused by check, on the loop
    ],
)
def test_only_long_numbers_block(n: Any, blocks: bool) -> None:
    service = NumbersService(RecordingTest())
    assert service.blocking_ops == {"numbers.check"}
    assert service.blocks("numbers.check", {"n": n}) is blocks
    assert not service.blocks("numbers.other", {"n": n})


@pytest.mark.parametrize("n", [str(LONG_PRIME), LONG_PRIME, str(LONG_PRIME * 3), "-" + "7" * 65])
def test_long_numbers_go_to_the_long_prime_test(n: Any) -> None:
    test = RecordingTest()
    got = NumbersService(test).handle("numbers.check", {"n": n}, CTX)
    assert got == check(n)  # the same answer as tested here
    assert test.asked == [int(n)]


@pytest.mark.parametrize("n", [SHORT, "0" * 100 + "7", "+" + SHORT, "2147483647"])
def test_short_numbers_are_tested_where_called(n: str) -> None:
    # A raw argument may look long (leading zeros): blocks() over-estimates,
    # check() counts the digits that matter.
    test = RecordingTest()
    got = NumbersService(test).handle("numbers.check", {"n": n}, CTX)
    assert got == check(n)
    assert test.asked == []
