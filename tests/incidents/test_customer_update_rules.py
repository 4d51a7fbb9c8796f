"""The customer updates' decisions, without an engine: when the next is due, and what one says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from itilflow.models import Incident, IncidentStatus, TimelineEntry
from itilflow.policies import StatusEvent, load_policies
from itilflow.services import customer_updates as updates
from itilflow.services.sla_timers import plan_timers

OPENED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
REPORTER = {"owner@example.com", "owner"}


@pytest.fixture(scope="module")
def policies():
    return load_policies()


def at(minutes: float) -> datetime:
    return OPENED + timedelta(minutes=minutes)


def entry(
    minutes: float, kind: str, actor: str = "chen", message: str = "", **data
) -> TimelineEntry:
    return TimelineEntry(
        incident_id=1, at=at(minutes), kind=kind, actor=actor, message=message, data=data
    )


def events(*pairs: tuple[float, str]) -> list[StatusEvent]:
    return [StatusEvent(at=at(m), kind=k) for m, k in pairs]


def incident(priority: str = "P1", status=IncidentStatus.acknowledged) -> Incident:
    return Incident(id=1, title="x", priority=priority, status=status, opened_at=OPENED)


def update_timer(policies, incident_, evts, fired=(), last_update=None, now=0.0):
    timers = plan_timers(incident_, evts, policies, set(fired), at(now), last_update=last_update)
    return [timer for timer in timers if timer.kind == "customer_update"]


def test_keys_count_the_updates_sent():
    assert updates.next_key([]) == "customer_update:1"
    assert updates.next_key(["customer_update:1", "customer_update:2"]) == "customer_update:3"


def test_due_an_interval_after_intake_then_after_each_update_sent(policies):
    [first] = update_timer(policies, incident(), events((0, "opened")))
    assert (first.key, first.due_at) == ("customer_update:1", at(30))
    # Sent 4 minutes late (the runner was down): the next follows it by a whole interval.
    [second] = update_timer(
        policies, incident(), events((0, "opened")), ["customer_update:1"], at(34), now=34
    )
    assert (second.key, second.due_at) == ("customer_update:2", at(64))


def test_p2_every_two_hours_and_p3_none(policies):
    [p2] = update_timer(policies, incident("P2"), events((0, "opened")))
    assert p2.due_at == at(120)
    assert update_timer(policies, incident("P3"), events((0, "opened"))) == []


def test_stops_on_hold_restarts_on_resume_and_ends_on_resolution(policies):
    held = incident(status=IncidentStatus.on_hold)
    assert update_timer(policies, held, events((0, "opened"), (10, "on_hold")), now=20) == []
    resumed = events((0, "opened"), (10, "on_hold"), (50, "resumed"))
    [after] = update_timer(policies, incident(), resumed, now=50)
    assert (after.key, after.due_at) == ("customer_update:1", at(80))
    for status in (IncidentStatus.resolved, IncidentStatus.closed):
        gone = update_timer(
            policies, incident(status=status), events((0, "opened"), (9, "resolved"))
        )
        assert gone == []


def test_a_reopened_incident_counts_afresh(policies):
    reopened = events((0, "opened"), (20, "resolved"), (300, "reopened"))
    [timer] = update_timer(policies, incident(), reopened, ["customer_update:1"], at(30), now=300)
    assert timer.due_at == at(330)


def test_the_latest_comment_to_the_reporter_is_news_once():
    entries = [
        entry(0, "opened", actor="api"),
        entry(5, "commented", message="internal only", visibility="internal"),
        entry(8, "commented", message="we found the cause", visibility="public"),
        entry(9, "commented", actor="owner", message="thanks!", visibility="public"),
    ]
    first = updates.update_content(entries, REPORTER)
    assert (first.comment, first.comment_at, first.news) == ("we found the cause", at(8), True)
    assert not first.remind_assignee

    entries.append(entry(30, "customer_update", actor="flow:sla-timer"))
    second = updates.update_content(entries, REPORTER)
    assert (second.comment, second.news, second.remind_assignee) == (
        "we found the cause",
        False,
        True,
    )

    entries.append(entry(40, "commented", message="fix deployed", visibility="public"))
    assert updates.update_content(entries, REPORTER).news


def test_nothing_said_yet_reminds_the_assignee():
    content = updates.update_content([entry(0, "opened")], REPORTER)
    assert (content.comment, content.news, content.remind_assignee) == (None, False, True)


def test_the_reporters_own_replies_are_not_news():
    entries = [
        entry(0, "opened"),
        entry(3, "commented", actor="Owner@Example.com", message="any news?", visibility="public"),
    ]
    assert updates.update_content(entries, REPORTER).comment is None
