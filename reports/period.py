"""Report periods: calendar months, quarters and years in the report policy's time zone, as UTC
instants.

A period is written as forms and the deployments take it: "2026-10" (a month), "2026-Q3" (a
quarter), "2026" (a year). Every figure of a report is computed for its period and for earlier
periods of the same length (the previous ones; for a quarter, four earlier ones reach the same
quarter a year before).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Span = Literal["month", "quarter", "year"]
SPANS: tuple[Span, ...] = get_args(Span)
_MONTHS: dict[Span, int] = {"month": 1, "quarter": 3, "year": 12}
# How many periods of a span make a year (the period a year before is this many back).
PER_YEAR: dict[Span, int] = {"month": 12, "quarter": 4, "year": 1}

# A report period as forms and the JSON schema of the report's deployments take it.
PERIOD_PATTERN = r"^[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$"
_EXPECTED = "expected a month (YYYY-MM, e.g. 2026-10), a quarter (YYYY-Qn, e.g. 2026-Q3) or a year"


@dataclass(frozen=True)
class Period:
    """One calendar month, quarter or year in a time zone: [start, end) as aware UTC datetimes.
    `index` is the month (1-12), the quarter (1-4) or 1 for a year."""

    span: Span
    year: int
    index: int
    zone: ZoneInfo

    @property
    def key(self) -> str:
        if self.span == "month":
            return f"{self.year:04d}-{self.index:02d}"
        if self.span == "quarter":
            return f"{self.year:04d}-Q{self.index}"
        return f"{self.year:04d}"

    @property
    def start(self) -> datetime:
        month = (self.index - 1) * _MONTHS[self.span] + 1
        return datetime(self.year, month, 1, tzinfo=self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def shifted(self, periods: int) -> Period:
        """The period `periods` periods later (earlier when negative)."""
        per_year = PER_YEAR[self.span]
        year, index = divmod(self.year * per_year + self.index - 1 + periods, per_year)
        return Period(self.span, year, index + 1, self.zone)

    def next(self) -> Period:
        return self.shifted(1)

    def previous(self) -> Period:
        return self.shifted(-1)


def Month(year: int, month: int, zone: ZoneInfo) -> Period:  # noqa: N802 (reads as a type)
    """A calendar month (the monthly report's period)."""
    return Period("month", year, month, zone)


def span_of(period: str) -> Span:
    """Which kind of period a valid period string is."""
    check_period(period)
    return "quarter" if "Q" in period else ("month" if "-" in period else "year")


def check_period(period: str) -> str:
    """`period` if it is a month, a quarter or a year as the form writes them; a ValueError that
    says what was expected otherwise (the report's flow refuses its parameter with it, before
    anything runs)."""
    if re.fullmatch(PERIOD_PATTERN, period) is None:
        raise ValueError(f"{_EXPECTED} (YYYY, e.g. 2026), got {period!r}")
    return period


def parse_period(period: str, zone: ZoneInfo) -> Period:
    """'2026-10', '2026-Q3' or '2026' -> Period; a ValueError that says what was expected
    otherwise."""
    text = period.strip()
    try:
        span = span_of(text)
    except ValueError:
        raise ValueError(f"{_EXPECTED} (YYYY, e.g. 2026), got {period!r}") from None
    year = int(text[:4])
    index = 1 if span == "year" else int(text[-1] if span == "quarter" else text[5:])
    return Period(span, year, index, zone)


def latest_complete(now: datetime, zone: ZoneInfo, span: Span = "month") -> Period:
    """The last complete period of `span` before `now`, as the calendar in `zone` sees it."""
    local = now.astimezone(zone)
    index = {"month": local.month, "quarter": (local.month - 1) // 3 + 1, "year": 1}[span]
    return Period(span, local.year, index, zone).previous()


def previous_month(now: datetime, zone: ZoneInfo) -> Period:
    """The last complete month before `now`, as the calendar in `zone` sees it."""
    return latest_complete(now, zone, "month")


def report_months(month: Period, compare: int) -> list[Period]:
    """The report's period and the `compare` periods before it, oldest first."""
    return [month.shifted(-back) for back in range(compare, -1, -1)]
