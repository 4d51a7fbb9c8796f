"""When a change without a planned start may run: the next maintenance window outside the
refusing freezes, computed from local wall times in the policy's zone. Pure: no engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from itilflow.policies import (
    ChangePolicy,
    NoAllowedStart,
    default_policy_dir,
    load_policies,
    next_allowed_start,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PATHS = {"standard": {"stages": []}, "normal": {"stages": []}, "emergency": {"stages": []}}


def policy(**fields: Any) -> ChangePolicy:
    return ChangePolicy.model_validate({"approvals": PATHS, **fields})


@pytest.fixture(scope="module")
def defaults() -> ChangePolicy:
    """change.yaml as shipped: weeknights 22:00-06:00 and weekends in Asia/Shanghai, the Spring
    Festival freeze (refuse) 2027-02-05..14 and the year-end one (raise)."""
    return load_policies(default_policy_dir()).change


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)  # type: ignore[misc]


def test_inside_a_window_it_may_start_at_once(defaults):
    tuesday_night = local(2026, 12, 8, 23, 30)
    assert next_allowed_start(defaults, tuesday_night) == tuesday_night


def test_on_a_weekday_it_waits_for_the_evening_window(defaults):
    thursday_noon = local(2026, 12, 3, 12, 0)
    assert next_allowed_start(defaults, thursday_noon) == local(2026, 12, 3, 22, 0)


def test_the_same_instant_in_any_zone_gives_the_same_start(defaults):
    thursday_noon = local(2026, 12, 3, 12, 0)
    in_utc = thursday_noon.astimezone(UTC)
    in_new_york = thursday_noon.astimezone(ZoneInfo("America/New_York"))
    starts = {next_allowed_start(defaults, at) for at in (thursday_noon, in_utc, in_new_york)}
    assert starts == {local(2026, 12, 3, 22, 0)}
    assert next_allowed_start(defaults, in_utc).tzinfo == UTC


def test_in_a_refusing_freeze_it_waits_for_the_first_window_after_it(defaults):
    # Spring Festival freeze: 2027-02-05 (Fri) .. 2027-02-14 (Sun); 02-15 is a Monday.
    in_the_freeze = local(2027, 2, 8, 10, 0)
    assert next_allowed_start(defaults, in_the_freeze) == local(2027, 2, 15, 22, 0)
    # Just before it: the Thursday night window is still open to it.
    before = local(2027, 2, 4, 12, 0)
    assert next_allowed_start(defaults, before) == local(2027, 2, 4, 22, 0)
    # Late on the Thursday night, past local midnight the freeze begins: the window's part on
    # the frozen day does not count.
    past_midnight = local(2027, 2, 5, 1, 0)
    assert next_allowed_start(defaults, past_midnight) == local(2027, 2, 15, 22, 0)


def test_a_freeze_that_only_raises_the_risk_does_not_hold_a_change(defaults):
    year_end = local(2026, 12, 29, 12, 0)  # in the year-end freeze (action: raise)
    assert next_allowed_start(defaults, year_end) == local(2026, 12, 29, 22, 0)


def test_an_overnight_window_runs_on_past_the_end_of_a_freeze():
    p = policy(
        timezone="Asia/Shanghai",
        maintenance_windows=[{"days": ["tue"], "start": "22:00", "end": "06:00"}],
        freeze_windows=[{"start": "2027-03-01", "end": "2027-03-09", "reason": "audit"}],
    )
    # Tuesday 2027-03-09 22:00 is on the freeze's last day; its window runs into Wednesday,
    # which is free from local midnight.
    assert next_allowed_start(p, local(2027, 3, 9, 12, 0)) == local(2027, 3, 10, 0, 0)


def test_without_windows_only_the_freezes_hold_a_change():
    p = policy(
        timezone="Asia/Shanghai",
        freeze_windows=[
            {"start": "2027-02-05", "end": "2027-02-14", "reason": "festival"},
            {"start": "2027-02-15", "end": "2027-02-16", "reason": "catch-up"},
        ],
    )
    assert next_allowed_start(p, local(2027, 1, 20, 9, 0)) == local(2027, 1, 20, 9, 0)
    # Two freezes back to back: the first allowed time after both.
    assert next_allowed_start(p, local(2027, 2, 10, 9, 0)) == local(2027, 2, 17, 0, 0)


def test_windows_follow_daylight_saving_time():
    p = policy(
        timezone="Europe/Berlin",
        maintenance_windows=[{"days": ["mon"], "start": "22:00", "end": "23:00"}],
    )
    berlin = ZoneInfo("Europe/Berlin")
    # Europe moves to summer time on Sunday 2027-03-28: Monday 22:00 is 20:00 UTC after it,
    # 21:00 UTC the week before.
    before = next_allowed_start(p, datetime(2027, 3, 20, 12, 0, tzinfo=berlin))
    after = next_allowed_start(p, datetime(2027, 3, 27, 12, 0, tzinfo=berlin))
    assert before == datetime(2027, 3, 22, 21, 0, tzinfo=UTC)
    assert after == datetime(2027, 3, 29, 20, 0, tzinfo=UTC)


def test_an_emergency_is_not_held(defaults):
    in_the_freeze = local(2027, 2, 8, 10, 0)
    assert next_allowed_start(defaults, in_the_freeze, category="emergency") == in_the_freeze


def test_a_policy_that_leaves_no_time_says_so():
    p = policy(freeze_windows=[{"start": "2026-01-01", "end": "2031-12-31", "reason": "forever"}])
    with pytest.raises(NoAllowedStart, match="no maintenance window"):
        next_allowed_start(p, datetime(2027, 1, 1, tzinfo=UTC))


def test_a_naive_time_is_refused(defaults):
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed_start(defaults, datetime(2027, 1, 1))  # noqa: DTZ001 (the point)
