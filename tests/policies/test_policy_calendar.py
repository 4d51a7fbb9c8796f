"""Business-time arithmetic across weekends, lunch breaks, holidays and DST changes."""

import random
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from itilflow.policies import Calendar, CalendarSpec, Policies, sla_deadline

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def office(timezone: str, *ranges: str, **extra: object) -> Calendar:
    spec = {"timezone": timezone, "hours": {day: list(ranges) for day in WEEKDAYS}, **extra}
    return CalendarSpec.model_validate(spec).calendar()


def h(value: float) -> timedelta:
    return timedelta(hours=value)


def test_within_one_day() -> None:
    cal = office("UTC", "09:00-17:00")
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # Monday
    assert cal.add_business_time(start, h(3)) == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    assert cal.business_time_between(start, datetime(2026, 3, 2, 13, 0, tzinfo=UTC)) == h(3)


def test_ending_exactly_at_closing_time_stays_that_day() -> None:
    cal = office("UTC", "09:00-17:00")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert cal.add_business_time(start, h(8)) == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def test_over_the_weekend() -> None:
    cal = office("UTC", "09:00-17:00")
    friday = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
    monday_11 = datetime(2026, 3, 9, 11, 0, tzinfo=UTC)
    assert cal.add_business_time(friday, h(4)) == monday_11
    assert cal.business_time_between(friday, monday_11) == h(4)


def test_start_outside_hours_waits_for_the_opening() -> None:
    cal = office("UTC", "09:00-17:00")
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert cal.add_business_time(saturday, h(1)) == datetime(2026, 3, 9, 10, 0, tzinfo=UTC)
    evening = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    assert cal.add_business_time(evening, h(1)) == datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    assert cal.business_time_between(saturday, datetime(2026, 3, 8, 23, tzinfo=UTC)) == h(0)


def test_zero_duration_and_reversed_range() -> None:
    cal = office("UTC", "09:00-17:00")
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert cal.add_business_time(saturday, timedelta()) == saturday
    assert cal.business_time_between(saturday, saturday - h(30)) == timedelta()
    with pytest.raises(ValueError, match="must not be negative"):
        cal.add_business_time(saturday, -h(1))


def test_shanghai_hours_with_lunch_break() -> None:
    cal = office("Asia/Shanghai", "09:00-12:00", "13:00-18:00")
    start = datetime(2026, 3, 2, 11, 0, tzinfo=SHANGHAI)  # Monday 11:00 = 03:00 UTC
    due = cal.add_business_time(start, h(2))
    assert due == datetime(2026, 3, 2, 14, 0, tzinfo=SHANGHAI)
    assert due.tzinfo is UTC and due.hour == 6
    # A working day is 8 hours: 24h of business time is three working days.
    assert cal.add_business_time(datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI), h(24)) == datetime(
        2026, 3, 4, 18, 0, tzinfo=SHANGHAI
    )


def test_start_given_in_another_zone() -> None:
    cal = office("Asia/Shanghai", "09:00-18:00")
    # Sunday 23:00 UTC is Monday 07:00 in Shanghai: two hours before opening.
    sunday_utc = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
    assert cal.add_business_time(sunday_utc, h(1)) == datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)


def test_holidays_are_skipped(defaults: Policies) -> None:
    cal = defaults.sla.calendars["office"].calendar()
    # Wednesday 30 September 17:00: one hour left that day, then the National Day week
    # (1, 2, 5, 6, 7 October are holidays; 3 and 4 are the weekend).
    start = datetime(2026, 9, 30, 17, 0, tzinfo=SHANGHAI)
    due = cal.add_business_time(start, h(2))
    assert due == datetime(2026, 10, 8, 10, 0, tzinfo=SHANGHAI)
    assert cal.business_time_between(start, due) == h(2)


def test_extra_workday_uses_monday_hours() -> None:
    saturday = date(2026, 3, 7)
    cal = office("UTC", "09:00-17:00", extra_workdays=[saturday.isoformat()])
    friday = datetime(2026, 3, 6, 16, 0, tzinfo=UTC)
    assert cal.add_business_time(friday, h(2)) == datetime(2026, 3, 7, 10, 0, tzinfo=UTC)


def test_berlin_spring_forward() -> None:
    cal = office("Europe/Berlin", "09:00-17:00")
    # Friday 27 March 16:00 CET (UTC+1); clocks go forward on Sunday 29 March.
    friday = datetime(2026, 3, 27, 16, 0, tzinfo=BERLIN)
    due = cal.add_business_time(friday, h(2))
    # Monday 10:00 local is now CEST (UTC+2).
    assert due == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert due.astimezone(BERLIN).hour == 10


def test_berlin_dst_days_are_23_and_25_hours_long() -> None:
    all_day = {day: ["00:00-24:00"] for day in ("sat", "sun")}
    cal = CalendarSpec.model_validate({"timezone": "Europe/Berlin", "hours": all_day}).calendar()
    spring_sat = datetime(2026, 3, 28, 0, 0, tzinfo=BERLIN)
    spring_mon = datetime(2026, 3, 30, 0, 0, tzinfo=BERLIN)
    assert cal.business_time_between(spring_sat, spring_mon) == h(47)
    autumn_sat = datetime(2026, 10, 24, 0, 0, tzinfo=BERLIN)
    autumn_mon = datetime(2026, 10, 26, 0, 0, tzinfo=BERLIN)
    assert cal.business_time_between(autumn_sat, autumn_mon) == h(49)
    # 30 hours from Saturday midnight in autumn: Sunday 05:00 local, after the repeated hour.
    assert cal.add_business_time(autumn_sat, h(30)) == datetime(2026, 10, 25, 5, 0, tzinfo=BERLIN)


def test_new_york_fall_back() -> None:
    cal = office("America/New_York", "09:00-17:00")
    # Friday 30 October 16:00 EDT (UTC-4); clocks go back on Sunday 1 November.
    friday = datetime(2026, 10, 30, 16, 0, tzinfo=NEW_YORK)
    due = cal.add_business_time(friday, h(2))
    assert due == datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 10:00 EST (UTC-5)
    assert cal.business_time_between(friday, due) == h(2)


def test_new_york_spring_forward_opening_shifts_in_utc() -> None:
    cal = office("America/New_York", "09:00-17:00")
    before = cal.add_business_time(datetime(2026, 3, 6, 0, 0, tzinfo=UTC), timedelta(minutes=1))
    after = cal.add_business_time(datetime(2026, 3, 9, 0, 0, tzinfo=UTC), timedelta(minutes=1))
    assert (before.hour, after.hour) == (14, 13)  # opening at 09:00 EST, then 09:00 EDT


def test_24x7_is_wall_time_even_across_dst() -> None:
    cal = CalendarSpec.model_validate({"24x7": True, "timezone": "Europe/Berlin"}).calendar()
    start = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    # Elapsed time, not wall-clock arithmetic: 24 hours later it is 13:00 local, not 12:00.
    assert cal.add_business_time(start, h(24)) == start.astimezone(UTC) + h(24)
    assert cal.add_business_time(start, h(24)).astimezone(BERLIN).hour == 13
    assert cal.business_time_between(start, start.astimezone(UTC) + h(100)) == h(100)
    assert Calendar.always().is_open(start)


def test_24x7_with_a_holiday() -> None:
    cal = Calendar(always_open=True, holidays=[date(2026, 3, 3)])
    monday_noon = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert cal.add_business_time(monday_noon, h(13)) == datetime(2026, 3, 4, 1, 0, tzinfo=UTC)


def test_is_open() -> None:
    cal = office("UTC", "09:00-12:00", "13:00-17:00")
    assert cal.is_open(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 3, 2, 12, 30, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 3, 2, 17, 0, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 3, 7, 10, 0, tzinfo=UTC))


def test_naive_datetimes_are_refused() -> None:
    cal = office("UTC", "09:00-17:00")
    naive = datetime(2026, 3, 2, 9, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_business_time(naive, h(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.business_time_between(naive, naive)


def test_a_calendar_needs_open_hours() -> None:
    with pytest.raises(ValueError, match="opening hours"):
        Calendar(timezone="UTC", hours={})


def test_add_and_between_agree(defaults: Policies) -> None:
    """Property: the business time up to add_business_time(start, d) is d."""
    rng = random.Random(20260302)
    calendars = [
        defaults.sla.calendars["office"].calendar(),
        office("Europe/Berlin", "08:30-12:00", "12:45-17:15"),
        office("America/New_York", "09:00-17:00"),
    ]
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(300):
        cal = rng.choice(calendars)
        start = origin + timedelta(minutes=rng.randrange(0, 365 * 24 * 60))
        duration = timedelta(minutes=rng.randrange(1, 200 * 60))
        due = cal.add_business_time(start, duration)
        assert due > start
        assert cal.business_time_between(start, due) == duration
        assert cal.is_open(due - timedelta(seconds=1))


def test_long_durations_are_fast(defaults: Policies) -> None:
    cal = defaults.sla.calendars["office"].calendar()
    start = datetime(2026, 1, 5, 9, 0, tzinfo=SHANGHAI)
    began = time.perf_counter()
    due = cal.add_business_time(start, h(8 * 1000))  # a thousand working days
    spent = cal.business_time_between(start, due)
    assert time.perf_counter() - began < 1.0
    assert spent == h(8000)
    assert due.year == 2029


def test_sla_deadline_is_add_business_time() -> None:
    cal = office("UTC", "09:00-17:00")
    friday = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
    assert sla_deadline(cal, friday, h(4)) == cal.add_business_time(friday, h(4))


def test_spec_round_trips_through_json() -> None:
    spec = CalendarSpec.model_validate(
        {"timezone": "Asia/Shanghai", "hours": {"mon": ["09:00-12:00"]}, "holidays": ["2026-10-01"]}
    )
    dumped = spec.model_dump(mode="json", by_alias=True)
    assert dumped["hours"] == {"mon": ["09:00-12:00"]}
    assert CalendarSpec.model_validate(dumped) == spec
