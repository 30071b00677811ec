"""The lab's text service: one string in, its lower- and upper-case forms out.

Operation ``text.convert`` takes ``{"text": str}`` (at most ``MAX_TEXT_CHARS``
characters; no other key) and returns ``{"lower": ..., "upper": ...}`` using
Python's full Unicode case mapping (so the results may differ in length from the input,
e.g. ``"ß".upper() == "SS"``). ``seed_reply`` reproduces the lab server's
plain-text reply for comparison runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.errors import InvalidArgument, UnknownOperation, only_argument
from transports.service import CallContext, JsonObject

#: Longest accepted ``text``, in characters (code points), not bytes.
MAX_TEXT_CHARS = 4000

OP_CONVERT = "text.convert"


def seed_reply(text: str) -> str:
    """The lab server's exact reply line for ``text``."""
    return f"[Lower Case] {text.lower()} [Upper Case] {text.upper()}"


def _text_arg(args: Mapping[str, Any]) -> str:
    text = only_argument(args, "text")
    if not isinstance(text, str):
        raise InvalidArgument(f"argument 'text' must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgument(
            f"argument 'text' has {len(text)} characters; the maximum is {MAX_TEXT_CHARS}"
        )
    # A lone surrogate (JSON allows "\ud800") cannot be encoded as UTF-8, so the
    # reply could not be sent; refuse it here as bad input rather than fail later.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("argument 'text' is not valid Unicode (lone surrogate)") from None
    return text


class TextService:
    """Case conversion; pure and fast, so it runs on the event loop."""

    name = "text"
    blocking_ops: frozenset[str] = frozenset()

    def blocks(self, op: str, args: Mapping[str, Any]) -> bool:
        return False

    def handle(self, op: str, args: Mapping[str, Any], ctx: CallContext) -> JsonObject:
        if op != OP_CONVERT:
            raise UnknownOperation(f"unknown operation {op!r} for service {self.name!r}")
        text = _text_arg(args)
        return {"lower": text.lower(), "upper": text.upper()}
