"""Business calendars: when the SLA clock runs.

`CalendarSpec` is what sla.yaml says; `Calendar` does the arithmetic. The arithmetic walks whole
open intervals (one or a few per day), never minutes, and builds each interval from local wall
times so that DST changes and holidays fall out of the time-zone database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from itilflow.policies._base import PolicyModel, TimeZoneName, raise_if

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60


def _parse_range(value: Any) -> tuple[int, int]:
    """ "09:00-18:00" -> (540, 1080), minutes after local midnight; "24:00" may end a range."""
    if isinstance(value, tuple | list) and len(value) == 2:
        return int(value[0]), int(value[1])
    hint = "expected opening hours like '09:00-18:00'"
    if not isinstance(value, str):
        raise ValueError(f"{hint}, got {value!r}")
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{hint}, got {value!r}")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or start >= _DAY_MINUTES or end > _DAY_MINUTES:
        raise ValueError(f"{hint} (00:00 to 24:00), got {value!r}")
    if end <= start:
        raise ValueError(f"{hint} with the end after the start, got {value!r}")
    return start, end


def _format_range(value: tuple[int, int]) -> str:
    (h1, m1), (h2, m2) = divmod(value[0], 60), divmod(value[1], 60)
    return f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"


TimeRange = Annotated[
    tuple[int, int],
    BeforeValidator(_parse_range),
    PlainSerializer(_format_range, return_type=str, when_used="json"),
]


class CalendarSpec(PolicyModel):
    """One calendar in sla.yaml: a time zone and either `24x7: true` or weekly hours."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    timezone: TimeZoneName = "UTC"
    always_open: bool = Field(False, alias="24x7")
    # Weekdays left out are closed.
    hours: dict[Weekday, list[TimeRange]] = {}
    holidays: list[date] = []
    # Weekend days worked instead of a holiday (China's make-up days); they get Monday's hours.
    extra_workdays: list[date] = []

    @model_validator(mode="after")
    def _check(self) -> CalendarSpec:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.always_open and self.hours:
            problems.append((("hours",), "a 24x7 calendar has no opening hours; remove one"))
        if not self.always_open and not any(self.hours.values()):
            problems.append(
                (("hours",), "expected opening hours for at least one weekday, or '24x7: true'")
            )
        if self.extra_workdays and not self.always_open and not self.hours.get("mon"):
            problems.append(
                (("extra_workdays",), "extra workdays take Monday's hours; set hours.mon")
            )
        for index, day in enumerate(self.extra_workdays):
            if day in self.holidays:
                problems.append((("extra_workdays", index), f"{day} is also listed as a holiday"))
        for day, ranges in self.hours.items():
            ordered = sorted(ranges)
            for earlier, later in zip(ordered, ordered[1:], strict=False):
                if later[0] < earlier[1]:
                    problems.append(
                        (
                            ("hours", day),
                            f"opening hours overlap: {_format_range(earlier)} and "
                            f"{_format_range(later)}",
                        )
                    )
        raise_if(problems)
        return self

    def calendar(self) -> Calendar:
        return Calendar(
            timezone=self.timezone,
            hours={WEEKDAYS.index(day): ranges for day, ranges in self.hours.items()},
            holidays=self.holidays,
            always_open=self.always_open,
            extra_workdays=self.extra_workdays,
        )


class Calendar:
    """Business-time arithmetic on aware datetimes; results are in UTC."""

    def __init__(
        self,
        timezone: str | ZoneInfo = "UTC",
        hours: Mapping[int, Sequence[tuple[int, int]]] | None = None,
        holidays: Iterable[date] = (),
        always_open: bool = False,
        extra_workdays: Iterable[date] = (),
    ) -> None:
        self.zone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.holidays = frozenset(holidays)
        self.extra_workdays = frozenset(extra_workdays)
        self.always_open = always_open
        if always_open:
            self._hours = dict.fromkeys(range(7), ((0, _DAY_MINUTES),))
        else:
            self._hours = {
                day: tuple(sorted(ranges)) for day, ranges in (hours or {}).items() if ranges
            }
        if not self._hours:
            # Without any open hour the interval walk below would never end.
            raise ValueError("a calendar needs opening hours on at least one weekday, or 24x7")

    @classmethod
    def always(cls) -> Calendar:
        return cls(always_open=True)

    def __repr__(self) -> str:
        kind = "24x7" if self.always_open else f"hours={self._hours}"
        return f"Calendar({self.zone.key!r}, {kind}, holidays={len(self.holidays)})"

    def is_open(self, at: datetime) -> bool:
        at = _utc(at, "at")
        for start, end in self._intervals(at):
            return start <= at < end
        return False  # pragma: no cover - _intervals never ends

    def add_business_time(self, start: datetime, duration: timedelta) -> datetime:
        """The moment `duration` of open time has passed since `start` (e.g. an SLA deadline).

        Time outside opening hours does not count; if `start` is outside them the clock starts at
        the next opening. A duration that ends exactly at a closing time returns that closing time.
        """
        start = _utc(start, "start")
        if duration < timedelta():
            raise ValueError(f"duration must not be negative, got {duration}")
        if not duration:
            return start
        if self._continuous:
            return start + duration
        remaining = duration
        for opens, closes in self._intervals(start):
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        raise AssertionError("unreachable: _intervals never ends")  # pragma: no cover

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Open time in [start, end); zero if end is not after start."""
        start, end = _utc(start, "start"), _utc(end, "end")
        if end <= start:
            return timedelta()
        if self._continuous:
            return end - start
        total = timedelta()
        for opens, closes in self._intervals(start):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total

    @property
    def _continuous(self) -> bool:
        return self.always_open and not self.holidays

    def _intervals(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals in UTC, in order, from `start` on; the first may be cut at `start`."""
        # Begin a day early: cheap insurance for zones whose midnight is shifted by DST.
        day = start.astimezone(self.zone).date() - timedelta(days=1)
        while True:
            if day not in self.holidays:
                weekday = 0 if day in self.extra_workdays else day.weekday()
                midnight = datetime(day.year, day.month, day.day, tzinfo=self.zone)
                for first, last in self._hours.get(weekday, ()):
                    # Aware + timedelta is wall-clock arithmetic; converting to UTC then applies
                    # the offset valid at that wall time, which is how DST shifts the interval.
                    opens = (midnight + timedelta(minutes=first)).astimezone(UTC)
                    closes = (midnight + timedelta(minutes=last)).astimezone(UTC)
                    if closes <= start or closes <= opens:
                        continue
                    yield max(opens, start), closes
            day += timedelta(days=1)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)
