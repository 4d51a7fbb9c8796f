"""compute_sla: figures from the timeline alone, including holds and reopened incidents."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from itilflow.policies import Policies, SlaPolicy, StatusEvent, compute_sla

# Monday 2 March 2026, 09:00 UTC: a plain working week with no holiday or DST change.
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return MONDAY + timedelta(hours=hours)


def h(value: float) -> timedelta:
    return timedelta(hours=value)


def timeline(*entries: tuple[float, str]) -> list[StatusEvent]:
    """`timeline((0, "opened"), (0.5, "acknowledged"))`: offsets in hours from MONDAY 09:00."""
    return [StatusEvent(at=at(offset), kind=kind) for offset, kind in entries]


def make_policy(**overrides: Any) -> SlaPolicy:
    """Round numbers: P1/P2 on a 24x7 calendar, P3/P4 on UTC office hours 09:00-17:00."""
    data: dict[str, Any] = {
        "calendars": {
            "always": {"24x7": True},
            "office": {
                "timezone": "UTC",
                "hours": {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            },
        },
        "targets": {
            "P1": {"response": "30m", "resolution": "4h", "calendar": "always"},
            "P2": {"response": "1h", "resolution": "8h", "calendar": "always"},
            "P3": {"response": "4h", "resolution": "16h", "calendar": "office"},
            "P4": {"response": "8h", "resolution": "40h", "calendar": "office"},
        },
    }
    data.update(overrides)
    return SlaPolicy.model_validate(data)


POLICY = make_policy()


def test_just_opened() -> None:
    figures = compute_sla(timeline((0, "opened")), POLICY, "P1", now=at(1 / 6))
    assert figures.opened_at == MONDAY
    assert figures.response_due == at(0.5)
    assert figures.resolution_due == at(4)
    assert figures.time_to_respond is None
    assert figures.responded_at is None
    assert figures.resolution_elapsed == timedelta(minutes=10)
    assert figures.time_to_resolve is None
    assert figures.time_on_hold == timedelta()
    assert not figures.response_breached
    assert not figures.resolution_breached
    assert not figures.paused


def test_acknowledged_in_time() -> None:
    figures = compute_sla(timeline((0, "opened"), (1 / 3, "acknowledged")), POLICY, "P1", at(1))
    assert figures.time_to_respond == timedelta(minutes=20)
    assert figures.responded_at == at(1 / 3)
    assert not figures.response_breached


def test_acknowledged_late() -> None:
    figures = compute_sla(timeline((0, "opened"), (0.75, "acknowledged")), POLICY, "P1", at(1))
    assert figures.time_to_respond == timedelta(minutes=45)
    assert figures.response_breached


def test_no_response_yet_breaches_once_due_has_passed() -> None:
    events = timeline((0, "opened"))
    assert not compute_sla(events, POLICY, "P1", now=at(0.5)).response_breached
    assert compute_sla(events, POLICY, "P1", now=at(0.51)).response_breached


def test_resolved_without_acknowledgement_counts_as_the_response() -> None:
    figures = compute_sla(timeline((0, "opened"), (0.25, "resolved")), POLICY, "P1", at(2))
    assert figures.responded_at == at(0.25)
    assert figures.time_to_respond == timedelta(minutes=15)
    assert figures.resolved_at == at(0.25)
    assert figures.time_to_resolve == timedelta(minutes=15)
    assert not figures.resolution_breached


def test_resolved_in_time_and_late() -> None:
    done = compute_sla(
        timeline((0, "opened"), (0.1, "acknowledged"), (3, "resolved")), POLICY, "P1", at(10)
    )
    assert done.time_to_resolve == h(3)
    assert done.resolution_due == at(4)
    assert not done.resolution_breached
    late = compute_sla(
        timeline((0, "opened"), (0.1, "acknowledged"), (5, "resolved")), POLICY, "P1", at(10)
    )
    assert late.time_to_resolve == h(5)
    assert late.resolution_due == at(4)
    assert late.resolution_breached


def test_hold_pauses_the_resolution_clock_only() -> None:
    events = timeline((0, "opened"), (0.1, "acknowledged"), (1, "on_hold"), (3, "resumed"))
    figures = compute_sla(events, POLICY, "P1", now=at(4))
    assert figures.resolution_elapsed == h(2)
    assert figures.time_on_hold == h(2)
    # 1h was spent before the hold; the remaining 3h run from the resume.
    assert figures.resolution_due == at(6)
    assert not figures.resolution_breached
    assert not figures.paused
    assert figures.response_due == at(0.5)  # holds never move the response deadline


def test_while_on_hold_there_is_no_resolution_deadline() -> None:
    events = timeline((0, "opened"), (0.1, "acknowledged"), (1, "on_hold"))
    figures = compute_sla(events, POLICY, "P1", now=at(30))
    assert figures.paused
    assert figures.resolution_due is None
    assert figures.resolution_elapsed == h(1)
    assert figures.time_on_hold == h(29)
    assert not figures.resolution_breached


def test_a_target_used_up_before_the_hold_stays_breached() -> None:
    events = timeline((0, "opened"), (0.1, "acknowledged"), (5, "on_hold"))
    figures = compute_sla(events, POLICY, "P1", now=at(6))
    assert figures.paused
    assert figures.resolution_due == at(4)
    assert figures.resolution_breached


def test_resolved_while_on_hold() -> None:
    events = timeline((0, "opened"), (0.1, "acknowledged"), (1, "on_hold"), (2, "resolved"))
    figures = compute_sla(events, POLICY, "P1", now=at(9))
    assert figures.time_to_resolve == h(1)
    assert figures.time_on_hold == h(1)
    assert not figures.paused
    assert figures.resolved_at == at(2)


def test_reopen_continues_the_same_clock() -> None:
    # Resolved after 3h, reopened 2h later: 1h of the 4h target remains, from the reopen.
    events = timeline((0, "opened"), (0.1, "acknowledged"), (3, "resolved"), (5, "reopened"))
    figures = compute_sla(events, POLICY, "P1", now=at(5.5))
    assert figures.resolution_elapsed == h(3.5)
    assert figures.resolution_due == at(6)  # not 9h: time already spent is not lost
    assert figures.resolved_at is None
    assert figures.time_to_resolve is None
    assert figures.time_on_hold == timedelta()  # resolved-then-reopened is not a hold
    assert not figures.resolution_breached
    assert compute_sla(events, POLICY, "P1", now=at(6.5)).resolution_breached


def test_reopen_keeps_earlier_hold_time_excluded() -> None:
    events = timeline(
        (0, "opened"),
        (0.1, "acknowledged"),
        (1, "on_hold"),
        (2, "resumed"),
        (3, "resolved"),
        (10, "reopened"),
        (10.5, "resolved"),
    )
    figures = compute_sla(events, POLICY, "P1", now=at(12))
    # Running: 0-1, 2-3 and 10-10.5; on hold 1-2; 3-10 counts for nothing.
    assert figures.time_to_resolve == h(2.5)
    assert figures.time_on_hold == h(1)
    assert figures.resolved_at == at(10.5)
    # 2h were spent before the reopen, so the remaining 2h run from it.
    assert figures.resolution_due == at(12)
    assert not figures.resolution_breached


def test_reopen_after_the_target_was_used_up() -> None:
    events = timeline((0, "opened"), (0.1, "acknowledged"), (3.5, "resolved"), (8, "reopened"))
    figures = compute_sla(events, POLICY, "P1", now=at(8.75))
    assert figures.resolution_due == at(8.5)
    assert figures.resolution_breached


def test_events_may_arrive_unsorted() -> None:
    events = timeline(
        (0, "opened"), (0.1, "acknowledged"), (1, "on_hold"), (2, "resumed"), (3, "resolved")
    )
    shuffled = [events[3], events[4], events[0], events[2], events[1]]
    assert compute_sla(shuffled, POLICY, "P1", at(5)) == compute_sla(events, POLICY, "P1", at(5))


def test_simultaneous_events_apply_in_lifecycle_order() -> None:
    events = [StatusEvent(at=MONDAY, kind="resolved"), StatusEvent(at=MONDAY, kind="opened")]
    figures = compute_sla(events, POLICY, "P1", at(1))
    assert figures.time_to_resolve == timedelta()
    assert figures.resolved_at == MONDAY


def test_events_after_now_are_not_known_yet() -> None:
    events = timeline((0, "opened"), (0.2, "acknowledged"), (2, "resolved"))
    figures = compute_sla(events, POLICY, "P1", now=at(1))
    assert figures.responded_at == at(0.2)
    assert figures.resolved_at is None
    assert figures.resolution_elapsed == h(1)


def test_other_timeline_kinds_are_ignored() -> None:
    events = timeline((0, "opened"), (0.1, "assigned"), (0.2, "note"), (0.3, "acknowledged"))
    figures = compute_sla(events, POLICY, "P1", now=at(1))
    assert figures.responded_at == at(0.3)


def test_duplicate_and_out_of_place_events_are_harmless() -> None:
    events = timeline(
        (0, "opened"),
        (0.5, "resumed"),  # not on hold: nothing to resume
        (1, "on_hold"),
        (1.5, "on_hold"),  # already on hold
        (2, "resumed"),
        (2.5, "reopened"),  # not resolved: nothing to reopen
        (3, "resolved"),
        (3.5, "on_hold"),  # resolved: no clock to stop
        (4, "closed"),  # closing after resolving changes nothing
    )
    figures = compute_sla(events, POLICY, "P1", now=at(6))
    assert figures.time_to_resolve == h(2)
    assert figures.time_on_hold == h(1)
    assert figures.resolved_at == at(3)


def test_closed_without_resolving_stops_the_clock() -> None:
    figures = compute_sla(timeline((0, "opened"), (2, "closed")), POLICY, "P1", at(9))
    assert figures.time_to_resolve == h(2)


def test_pause_on_comes_from_the_policy() -> None:
    events = timeline((0, "opened"), (1, "on_hold"), (2, "awaiting_vendor"), (3, "resumed"))
    never = make_policy(pause_on=[])
    assert compute_sla(events, never, "P1", at(4)).resolution_elapsed == h(4)
    vendor = make_policy(pause_on=["awaiting_vendor"])
    figures = compute_sla(events, vendor, "P1", at(4))
    assert figures.resolution_elapsed == h(3)
    assert figures.time_on_hold == h(1)


def test_business_hours_priority_over_a_weekend() -> None:
    friday_4pm = MONDAY + timedelta(days=4, hours=7)
    events = [StatusEvent(at=friday_4pm, kind="opened")]
    figures = compute_sla(events, POLICY, "P3", now=friday_4pm + timedelta(days=2))
    assert figures.calendar == "office"
    assert figures.response_due == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # Monday 12:00
    # 16h: Friday 1h, Monday 8h, Tuesday 7h.
    assert figures.resolution_due == datetime(2026, 3, 10, 16, 0, tzinfo=UTC)
    assert figures.resolution_elapsed == h(1)  # only Friday 16:00-17:00 counted so far
    assert not figures.response_breached


def test_business_time_to_respond_skips_the_night() -> None:
    monday_4pm = at(7)
    events = [
        StatusEvent(at=monday_4pm, kind="opened"),
        StatusEvent(at=monday_4pm + h(17.5), kind="acknowledged"),  # Tuesday 09:30
    ]
    figures = compute_sla(events, POLICY, "P3", now=monday_4pm + h(20))
    assert figures.time_to_respond == h(1.5)
    assert not figures.response_breached


def test_hold_over_business_hours_only_excludes_business_time() -> None:
    events = [
        StatusEvent(at=at(0), kind="opened"),  # Monday 09:00
        StatusEvent(at=at(4), kind="on_hold"),  # Monday 13:00
        StatusEvent(at=at(24), kind="resumed"),  # Tuesday 09:00
    ]
    figures = compute_sla(events, POLICY, "P3", now=at(26))
    assert figures.time_on_hold == h(20)  # wall time
    assert figures.resolution_elapsed == h(6)  # business time, hold excluded
    # 12h remain from Tuesday 09:00: Tuesday 8h + Wednesday 4h.
    assert figures.resolution_due == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)


def test_recomputing_under_another_policy_changes_the_figures(defaults: Policies) -> None:
    friday_4pm = MONDAY + timedelta(days=4, hours=7)
    events = [
        StatusEvent(at=friday_4pm, kind="opened"),
        StatusEvent(at=friday_4pm + h(20), kind="acknowledged"),
        StatusEvent(at=friday_4pm + h(70), kind="resolved"),
    ]
    now = friday_4pm + h(80)
    office = compute_sla(events, POLICY, "P3", now)
    round_the_clock = make_policy(
        targets={
            priority: {"response": "4h", "resolution": "16h", "calendar": "always"}
            for priority in ("P1", "P2", "P3", "P4")
        }
    )
    always = compute_sla(events, round_the_clock, "P3", now)
    assert office != always
    assert (office.response_breached, always.response_breached) == (False, True)
    assert (office.resolution_breached, always.resolution_breached) == (False, True)
    assert office.time_to_resolve == h(6)  # Friday 16-17 and Monday 09-14 (UTC office)
    assert always.time_to_resolve == h(70)
    shipped = compute_sla(events, defaults.sla, "P3", now)
    assert shipped.calendar == "office"
    assert shipped.time_to_resolve not in (office.time_to_resolve, always.time_to_resolve)


def test_figures_round_trip_through_json() -> None:
    events = timeline((0, "opened"), (1, "on_hold"))
    figures = compute_sla(events, POLICY, "P2", at(2))
    assert type(figures).model_validate(figures.model_dump(mode="json")) == figures


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no 'opened' event"):
        compute_sla(timeline((0, "acknowledged")), POLICY, "P1", at(1))
    with pytest.raises(ValueError, match="unknown priority 'P7'; expected one of P1, P2, P3, P4"):
        compute_sla(timeline((0, "opened")), POLICY, "P7", at(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_sla(timeline((0, "opened")), POLICY, "P1", datetime(2026, 3, 2))  # noqa: DTZ001
    with pytest.raises(ValidationError):
        StatusEvent(at=datetime(2026, 3, 2), kind="opened")  # noqa: DTZ001


def test_policy_rejects_pausing_on_a_clock_event() -> None:
    with pytest.raises(ValidationError, match="'resolved' cannot pause the clock"):
        make_policy(pause_on=["resolved"])


def test_resolved_while_on_hold_is_not_breached_by_the_hold(defaults) -> None:
    # 1 h running, then on hold, resolved 9 h later: 1 h of a 4 h target used.
    opened = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    events = [
        StatusEvent(at=opened, kind="opened"),
        StatusEvent(at=opened + timedelta(hours=1), kind="on_hold"),
        StatusEvent(at=opened + timedelta(hours=10), kind="resolved"),
    ]
    figures = compute_sla(events, defaults.sla, "P1", opened + timedelta(hours=11))
    assert figures.time_to_resolve == timedelta(hours=1)
    assert figures.time_on_hold == timedelta(hours=9)
    assert not figures.resolution_breached
