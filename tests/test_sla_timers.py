"""Which timers an incident should have: a pure function of its state, timeline and policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from itilflow.models import Incident, IncidentStatus
from itilflow.policies import StatusEvent, load_policies, snapshot_escalation
from itilflow.services.sla_timers import plan_timers

OPENED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Asia/Shanghai


@pytest.fixture(scope="module")
def policies():
    return load_policies()


def make_incident(policies, priority: str = "P1", status=IncidentStatus.assigned) -> Incident:
    return Incident(
        id=1,
        title="x",
        priority=priority,
        status=status,
        opened_at=OPENED,
        escalation=snapshot_escalation(policies.escalation, priority).model_dump(mode="json"),
    )


def events(*pairs: tuple[int, str]) -> list[StatusEvent]:
    return [StatusEvent(at=OPENED + timedelta(minutes=m), kind=k) for m, k in pairs]


def plan(policies, incident, evts, fired=frozenset(), now_minutes: int = 0):
    timers = plan_timers(
        incident, evts, policies, set(fired), OPENED + timedelta(minutes=now_minutes)
    )
    return {timer.key: timer for timer in timers}


def test_a_new_p1_has_its_whole_chain_and_both_deadlines(policies):
    timers = plan(policies, make_incident(policies), events((0, "opened")))
    assert timers["response_due"].due_at == OPENED + timedelta(minutes=30)
    assert timers["resolution_due"].due_at == OPENED + timedelta(hours=4)
    assert timers["customer_update:1"].due_at == OPENED + timedelta(minutes=30)
    assert not [key for key in timers if key.startswith("progress")]  # replaced by the above
    escalations = sorted(
        (t.due_at - OPENED, t.data["notify"]) for t in timers.values() if t.kind == "escalation"
    )
    assert escalations[0] == (timedelta(minutes=5), "on_call")
    assert escalations[-1] == (timedelta(minutes=30), "manager")
    assert len(escalations) == 6  # 5m, 10m + 2 repeats, 15m, 30m


def test_acknowledging_stops_the_chain_and_the_response_timer(policies):
    timers = plan(
        policies,
        make_incident(policies, status=IncidentStatus.acknowledged),
        events((0, "opened"), (5, "acknowledged")),
        now_minutes=5,
    )
    assert not [key for key in timers if key.startswith("escalation")]
    assert "response_due" not in timers
    assert "resolution_due" in timers


def test_on_hold_pauses_resolution_and_reminders(policies):
    incident = make_incident(policies, status=IncidentStatus.on_hold)
    timers = plan(
        policies,
        incident,
        events((0, "opened"), (5, "acknowledged"), (10, "on_hold")),
        now_minutes=20,
    )
    assert "resolution_due" not in timers
    assert not [key for key in timers if key.startswith("customer_update")]


def test_resume_moves_the_resolution_deadline_by_the_hold(policies):
    incident = make_incident(policies, status=IncidentStatus.acknowledged)
    timers = plan(
        policies,
        incident,
        events((0, "opened"), (5, "acknowledged"), (10, "on_hold"), (70, "resumed")),
        now_minutes=70,
    )
    assert timers["resolution_due"].due_at == OPENED + timedelta(hours=5)


def test_fired_timers_are_never_planned_again_and_updates_move_on(policies):
    fired = {"escalation:0:0", "customer_update:1", "customer_update:2"}
    timers = plan_timers(
        make_incident(policies),
        events((0, "opened")),
        policies,
        fired,
        OPENED + timedelta(minutes=61),
        last_update=OPENED + timedelta(minutes=60, seconds=5),
    )
    keys = {timer.key: timer for timer in timers}
    assert "escalation:0:0" not in keys
    # An interval after the last update sent, not after its due time.
    assert keys["customer_update:3"].due_at == OPENED + timedelta(minutes=90, seconds=5)


def test_resolved_and_closed_incidents_have_no_timers(policies):
    for status in (IncidentStatus.resolved, IncidentStatus.closed):
        assert (
            plan(
                policies,
                make_incident(policies, status=status),
                events((0, "opened"), (5, "resolved")),
            )
            == {}
        )


def test_business_hours_priorities_wait_for_the_office(policies):
    friday_evening = datetime(2026, 11, 27, 11, 0, tzinfo=UTC)  # 19:00 Shanghai, after hours
    incident = make_incident(policies, priority="P3")
    incident.opened_at = friday_evening
    timers = plan_timers(
        incident,
        [StatusEvent(at=friday_evening, kind="opened")],
        policies,
        set(),
        friday_evening,
    )
    response = next(t for t in timers if t.key == "response_due")
    # P3 responds within 4 business hours: Monday 09:00 + 4h (lunch 12-13) = 14:00 Shanghai.
    assert response.due_at == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_a_later_policy_edit_does_not_change_a_running_escalation(policies, tmp_path):
    incident = make_incident(policies)
    edited_dir = tmp_path / "policies"
    from shutil import copytree

    from itilflow.policies import default_policy_dir

    copytree(str(default_policy_dir()), edited_dir)
    path = edited_dir / "escalation.yaml"
    path.write_text(
        path.read_text().replace("{after: 30m, notify: manager}", "{after: 20m, notify: manager}")
    )
    edited = load_policies(edited_dir)
    before = plan(policies, incident, events((0, "opened")))
    after = plan(edited, incident, events((0, "opened")))
    assert {k: v.due_at for k, v in before.items()} == {k: v.due_at for k, v in after.items()}
