"""The one clock every SLA, timer and report reads, so tests can move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None
_offset = timedelta()


def now() -> datetime:
    """The current time, timezone-aware in UTC."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def freeze(at: datetime) -> None:
    """Stop the clock at `at` (tests)."""
    if at.tzinfo is None:
        raise ValueError("freeze() needs a timezone-aware datetime")
    global _frozen
    _frozen = at.astimezone(UTC)


def advance(by: timedelta) -> None:
    """Move a frozen clock forward, or shift the running one (tests)."""
    global _frozen, _offset
    if _frozen is not None:
        _frozen += by
    else:
        _offset += by


def reset() -> None:
    global _frozen, _offset
    _frozen = None
    _offset = timedelta()


def time_zone_name(name: str) -> str:
    """`name` when it is an IANA time zone known here, else a ValueError saying what is expected
    (a pydantic validator). ZoneInfo raises OSError, not ZoneInfoNotFoundError, for a name longer
    than a file name may be: that is no zone either."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"expected an IANA time zone like 'Asia/Shanghai' or 'Europe/Berlin', got {name!r}"
        ) from None
    return name
