"""When a change without a planned start may run: the next maintenance window outside the
change freezes (change.yaml). Pure: the change process asks, after approval, and schedules it.

Windows and freezes are local wall times in the policy's time zone; every instant is built from
them with the time-zone database, so DST shifts fall out of it. Results are in UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from itilflow.policies.change import WEEKDAYS, ChangePolicy, FreezeWindow

# Windows repeat weekly and freezes are dated: far enough to pass any freeze a policy holds.
HORIZON_DAYS = 800


class NoAllowedStart(ValueError):
    """No window outside the freezes within HORIZON_DAYS: the policy leaves no time to run."""


def refusing_freeze(policy: ChangePolicy, day: date) -> FreezeWindow | None:
    """The freeze that refuses changes (action `refuse`) on this local day, if any."""
    for freeze in policy.freeze_windows:
        if freeze.action == "refuse" and freeze.start <= day <= freeze.end:
            return freeze
    return None


def next_allowed_start(
    policy: ChangePolicy, after: datetime, *, category: str = "normal"
) -> datetime:
    """The first instant from `after` on that is inside a maintenance window (any time, when the
    policy has none) and not on a day of a refusing freeze; `after` itself when it already is.
    An emergency change is not held by windows or freezes (as with a planned start, where a
    freeze never refuses one): it runs at once."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"after must be a timezone-aware datetime, got naive {after!r}")
    after = after.astimezone(UTC)
    if category == "emergency":
        return after
    for opens, closes in _open_intervals(policy, after):
        start = _first_unfrozen(policy, max(opens, after), closes)
        if start is not None:
            return start
    raise NoAllowedStart(
        f"no maintenance window outside the change freezes within {HORIZON_DAYS} days of "
        f"{after.isoformat()}"
    )


def _open_intervals(policy: ChangePolicy, after: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Maintenance windows (UTC) that end after `after`, in order of opening; without windows,
    the whole of each local day."""
    zone = policy.zone
    first_day = after.astimezone(zone).date() - timedelta(days=1)  # an overnight window's start
    for offset in range(HORIZON_DAYS):
        day = first_day + timedelta(days=offset)
        intervals = []
        if not policy.maintenance_windows:
            intervals.append((_at(day, time(0), zone), _at(day + timedelta(days=1), time(0), zone)))
        for window in policy.maintenance_windows:
            if WEEKDAYS[day.weekday()] not in window.days:
                continue
            ends_on = day + timedelta(days=1) if window.end <= window.start else day
            intervals.append((_at(day, window.start, zone), _at(ends_on, window.end, zone)))
        for opens, closes in sorted(intervals):
            if closes > after and closes > opens:
                yield opens, closes


def _first_unfrozen(policy: ChangePolicy, start: datetime, closes: datetime) -> datetime | None:
    """The first instant in [start, closes) on a local day no freeze refuses, or None."""
    zone = policy.zone
    while start < closes:
        freeze = refusing_freeze(policy, start.astimezone(zone).date())
        if freeze is None:
            return start
        start = _at(freeze.end + timedelta(days=1), time(0), zone)  # the morning after it
    return None


def _at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, wall.hour, wall.minute, tzinfo=zone).astimezone(
        UTC
    )
