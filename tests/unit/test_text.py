"""Tests of the text service (services.text)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.errors import InvalidArgument, UnknownOperation
from services.text import MAX_TEXT_CHARS, TextService, seed_reply
from transports.service import CallContext

CTX = CallContext(request_id="req-1", now=0.0)


def convert(args: Any) -> dict[str, Any]:
    return TextService().handle("text.convert", args, CTX)


def test_service_identity() -> None:
    service = TextService()
    assert service.name == "text"
    assert service.blocking_ops == frozenset()


def test_lab_example() -> None:
    assert convert({"text": "hello world"}) == {"lower": "hello world", "upper": "HELLO WORLD"}
    assert convert({"text": "Hello World"}) == {"lower": "hello world", "upper": "HELLO WORLD"}


def test_seed_reply_format() -> None:
    assert seed_reply("hello world") == "[Lower Case] hello world [Upper Case] HELLO WORLD"
    assert seed_reply("MiXeD 123!") == "[Lower Case] mixed 123! [Upper Case] MIXED 123!"
    assert seed_reply("") == "[Lower Case]  [Upper Case] "


def test_empty_and_non_letters() -> None:
    assert convert({"text": ""}) == {"lower": "", "upper": ""}
    assert convert({"text": "123 !? \n\t"}) == {"lower": "123 !? \n\t", "upper": "123 !? \n\t"}


@pytest.mark.parametrize(
    ("text", "lower", "upper"),
    [
        ("Ünïcödé", "ünïcödé", "ÜNÏCÖDÉ"),
        ("Straße", "straße", "STRASSE"),  # full case mapping: length changes
        ("ΣΊΣΥΦΟΣ", "σίσυφος", "ΣΊΣΥΦΟΣ"),  # final sigma
        ("İ", "i̇", "İ"),  # dotted capital I lowercases to two code points
        ("日本語 😀", "日本語 😀", "日本語 😀"),
    ],
)
def test_unicode(text: str, lower: str, upper: str) -> None:
    assert convert({"text": text}) == {"lower": lower, "upper": upper}


def test_length_limit_boundary() -> None:
    at_limit = "a" * MAX_TEXT_CHARS
    assert convert({"text": at_limit})["upper"] == "A" * MAX_TEXT_CHARS
    with pytest.raises(InvalidArgument, match="4001 characters; the maximum is 4000"):
        convert({"text": "a" * (MAX_TEXT_CHARS + 1)})


def test_limit_counts_characters_not_bytes() -> None:
    # 4000 four-byte characters are still 4000 characters.
    assert convert({"text": "😀" * MAX_TEXT_CHARS})["lower"] == "😀" * MAX_TEXT_CHARS


@pytest.mark.parametrize("value", [None, 42, 4.2, True, b"bytes", ["a"], {"a": 1}])
def test_wrong_type(value: object) -> None:
    with pytest.raises(InvalidArgument, match="'text' must be a string"):
        convert({"text": value})


def test_missing_argument() -> None:
    with pytest.raises(InvalidArgument, match="missing argument 'text'"):
        convert({})
    with pytest.raises(InvalidArgument, match="missing argument 'text'"):
        convert({"txt": "hello"})


def test_args_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match="must be an object"):
        convert(["hello"])


def test_lone_surrogate_rejected() -> None:
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        convert({"text": "ab\ud800cd"})


def test_extra_arguments_are_refused() -> None:
    # PROTOCOL.md section 7: a misspelt or unsupported argument is not silently ignored.
    with pytest.raises(InvalidArgument, match=r"unexpected argument\(s\): extra"):
        convert({"text": "Hi", "extra": 1})


@pytest.mark.parametrize("op", ["text.upper", "convert", "numbers.check", "", "TEXT.CONVERT"])
def test_unknown_operation(op: str) -> None:
    with pytest.raises(UnknownOperation, match="unknown operation"):
        TextService().handle(op, {"text": "hello"}, CTX)


def test_errors_carry_codes() -> None:
    with pytest.raises(InvalidArgument) as info:
        convert({"text": 1})
    assert info.value.code == "INVALID_ARGUMENT"
    with pytest.raises(UnknownOperation) as unknown:
        TextService().handle("x", {}, CTX)
    assert unknown.value.code == "UNKNOWN_OPERATION"


@given(st.text(max_size=200))
def test_property_matches_str_methods_and_seed(text: str) -> None:
    result = convert({"text": text})
    assert result == {"lower": text.lower(), "upper": text.upper()}
    assert seed_reply(text) == f"[Lower Case] {result['lower']} [Upper Case] {result['upper']}"
