"""Report months: calendar months in the report policy's time zone, as UTC instants."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class Month:
    """One calendar month in a time zone: [start, end) as aware UTC datetimes."""

    year: int
    month: int
    zone: ZoneInfo

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    def next(self) -> Month:
        year, month = divmod(self.year * 12 + self.month, 12)
        return Month(year, month + 1, self.zone)

    def previous(self) -> Month:
        year, month = divmod(self.year * 12 + self.month - 2, 12)
        return Month(year, month + 1, self.zone)


# A report period as forms and the JSON schema of the report's deployment take it.
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


def check_period(period: str) -> str:
    """`period` if it is a month as YYYY-MM; a ValueError that says what was expected
    otherwise (the report's flow refuses its parameter with it, before anything runs)."""
    if re.fullmatch(PERIOD_PATTERN, period) is None:
        raise ValueError(f"expected a month as YYYY-MM, e.g. 2026-10, got {period!r}")
    return period


def parse_period(period: str, zone: ZoneInfo) -> Month:
    """'2026-10' -> Month; a ValueError that says what was expected otherwise."""
    match = _PERIOD.fullmatch(period.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"expected a period like '2026-10' (YYYY-MM), got {period!r}")
    return Month(int(match.group(1)), int(match.group(2)), zone)


def previous_month(now: datetime, zone: ZoneInfo) -> Month:
    """The last complete month before `now`, as the calendar in `zone` sees it."""
    local = now.astimezone(zone)
    return Month(local.year, local.month, zone).previous()


def report_months(month: Month, compare: int) -> list[Month]:
    """The report month and the `compare` months before it, oldest first."""
    months = [month]
    for _ in range(compare):
        months.append(months[-1].previous())
    return months[::-1]
