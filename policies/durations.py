"""Durations as process owners write them: "15m", "4h", "3d", "1d2h"."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DURATION_HINT = "a duration like '30m', '4h' or '3d'"


def parse_duration(text: str | timedelta) -> timedelta:
    """Parse "15m", "4h", "3d", "1d2h", "90s" or "0" into a timedelta.

    Units are d(ays, 24 hours), h(ours), m(inutes) and s(econds), largest first, whole numbers
    only. Against a business calendar the result is business time: "27h" on a 9-hour working day is
    three working days, whereas "3d" is 72 business hours.
    """
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected {DURATION_HINT}, got {_describe(text)}")
    compact = text.strip().lower().replace(" ", "")
    if compact == "0":
        return timedelta()
    match = _DURATION.fullmatch(compact)
    if not compact or match is None or not any(match.groups()):
        raise ValueError(f"expected {DURATION_HINT}, got {text!r}")
    seconds = sum(
        int(value) * _UNITS[unit]
        for value, unit in zip(match.groups(), "dhms", strict=True)
        if value
    )
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, so snapshots stored as JSON read back the same."""
    total = int(value.total_seconds())
    if total < 0 or value != timedelta(seconds=total):
        raise ValueError(f"cannot write {value!r} as a duration: not whole non-negative seconds")
    if total == 0:
        return "0m"
    parts = []
    for unit, size in _UNITS.items():
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, int | float):
        return f"{value} (a bare number has no unit)"
    return repr(value)


def _validate(value: Any) -> timedelta:
    result = parse_duration(value)
    if result < timedelta():
        raise ValueError(f"expected {DURATION_HINT}, got a negative duration")
    return result


# The field type used in every policy model: parsed from owner text, written back the same way.
Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
