"""``--policy`` values: ``NAME`` or ``NAME:key=value,...`` to a RetryPolicy."""

from __future__ import annotations

from transports.retry.durations import _parse_duration
from transports.retry.policy import OnTimeout, RetryPolicy


def parse_policy(spec: str) -> RetryPolicy:
    """Parse a ``--policy`` value: ``NAME`` or ``NAME:key=value,...``.

    Keys are ``timeout``, ``base`` and ``cap``, in seconds, optionally with a
    unit (``expo-full:timeout=20ms,cap=1s``), and ``on-timeout`` (``same`` or
    ``reconnect``, see ``OnTimeout``). Raises ValueError listing the valid
    names for an unknown policy.
    """
    name, _, params = spec.partition(":")
    overrides: dict[str, float] = {}
    on_timeout: OnTimeout | None = None
    for item in filter(None, (p.strip() for p in params.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key == "on-timeout":
            if on_timeout is not None:
                raise ValueError(f"policy parameter {key!r} given twice in {spec!r}")
            on_timeout = _parse_on_timeout(value.strip())
            continue
        if not sep or key not in ("timeout", "base", "cap"):
            raise ValueError(
                f"bad policy parameter {item!r} in {spec!r}: "
                "expected timeout=, base=, cap= or on-timeout="
            )
        if key in overrides:
            raise ValueError(f"policy parameter {key!r} given twice in {spec!r}")
        overrides[key] = _parse_duration(key, value)
    return RetryPolicy.from_name(
        name,
        timeout=overrides.get("timeout"),
        base=overrides.get("base"),
        cap=overrides.get("cap"),
        on_timeout=on_timeout or OnTimeout.SAME,
    )


def _parse_on_timeout(text: str) -> OnTimeout:
    try:
        return OnTimeout(text)
    except ValueError:
        choices = ", ".join(choice.value for choice in OnTimeout)
        raise ValueError(f"on-timeout={text!r}: expected one of {choices}") from None
