"""Client-wide retry throttling from gRPC's gRFC A6."""

from __future__ import annotations

from typing import Final

from transports.retry.durations import _check_positive


class RetryBudget:
    """Client-wide retry throttling, as in gRFC A6 (gRPC retry design).

    ``tokens`` starts at ``max_tokens``. Every failed attempt (timeout or
    connection error) takes 1 token (floor 0); every success gives back
    ``token_ratio`` (ceiling ``max_tokens``). Retries are allowed only while
    ``tokens > max_tokens / 2``. First attempts are never throttled: the budget
    only decides whether a *failed* call may try again, so a client facing a
    mostly-failing server degrades to one attempt per call instead of
    multiplying its load by ``max_attempts``.

    Like gRPC, tokens are kept in integer thousandths so that ten successes of
    0.1 add exactly one token; ``token_ratio`` is rounded to 3 decimals.
    """

    _SCALE: Final = 1000

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        self.max_tokens: Final = _check_positive("max_tokens", max_tokens)
        ratio = _check_positive("token_ratio", token_ratio)
        self._max_milli: Final = round(self.max_tokens * self._SCALE)
        self._ratio_milli: Final = round(ratio * self._SCALE)
        if self._max_milli < 1:
            raise ValueError(f"max_tokens must be at least 0.001, got {max_tokens!r}")
        if self._ratio_milli < 1:
            raise ValueError(f"token_ratio must be at least 0.001, got {token_ratio!r}")
        self.token_ratio: Final = self._ratio_milli / self._SCALE
        self._milli = self._max_milli

    @property
    def tokens(self) -> float:
        """Current token count."""
        return self._milli / self._SCALE

    def allow_retry(self) -> bool:
        """May a failed call send another attempt? (tokens > max_tokens / 2)."""
        # 2*tokens > max keeps the comparison in exact integer arithmetic.
        return 2 * self._milli > self._max_milli

    def on_failure(self) -> None:
        """An attempt failed (timeout or connection error): one token less."""
        self._milli = max(0, self._milli - self._SCALE)

    def on_success(self) -> None:
        """An attempt got its reply: ``token_ratio`` tokens more."""
        self._milli = min(self._max_milli, self._milli + self._ratio_milli)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(tokens={self.tokens:g}, max_tokens={self.max_tokens:g}, "
            f"token_ratio={self.token_ratio:g})"
        )
