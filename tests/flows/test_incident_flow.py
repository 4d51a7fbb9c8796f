"""The incident process end to end on a real Prefect server, SMTP server and chat sink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.models import FlowTrigger, Incident, get_timeline
from tests.support.csrf import csrf_of
from tests.support.principals import as_person

pytestmark = pytest.mark.usefixtures("prefect_server")

MONDAY_MORNING = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


def open_incident(client, **fields) -> dict:
    payload = {
        "title": "Payment module fails",
        "category": "software",
        "impact": "high",
        "urgency": "high",
        "reporter_email": "owner@example.com",
        **fields,
    }
    response = client.post("/api/incidents", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def kinds(rt, incident_id: int) -> list[str]:
    with Session(rt.engine) as session:
        return [entry.kind for entry in get_timeline(session=session, incident_id=incident_id)]


def pending_keys(rt, incident_id: int) -> set[str]:
    with Session(rt.engine) as session:
        triggers = session.exec(
            select(FlowTrigger).where(FlowTrigger.incident_id == incident_id)
        ).all()
        return {t.key for t in triggers if t.pending}


async def run(rt) -> Runner:
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    return runner


async def test_new_incident_is_classified_assigned_notified_and_timed(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    runner = await run(rt)
    assert runner.failed == 0

    incident = client.get(f"/api/incidents/{ref['id']}").json()
    assert incident["priority"] == "P1"
    assert incident["status"] == "assigned"
    assert incident["group"] == "applications"
    assert incident["assignee"] in {"chen", "liu"}

    mail = smtp_server.wait_for(1)[0]
    assert ref["number"] in mail.message["Subject"]
    assert f"{incident['assignee']}@example.com" in mail.rcpt_tos
    chat = http_sink.wait_for(1)[0].json
    assert ref["number"] in chat["title"] + chat["message"]

    timeline = kinds(rt, ref["id"])
    assert timeline[:6] == [
        "opened",
        "classified",
        "assigned",
        "notified",
        "notified",
        "sla_started",
    ]
    assert timeline[6:] == []  # the chain's first page is 5 minutes away
    timers = pending_keys(rt, ref["id"])
    assert {"response_due", "resolution_due", "customer_update:1"} <= timers
    assert any(key.startswith("escalation:") for key in timers)


async def test_runner_rerun_sends_nothing_twice(client, rt, smtp_server, http_sink):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    await run(rt)
    smtp_server.wait_for(1)
    # A runner that crashed after sending would run the flow again: same outcome, no new mail.
    with Session(rt.engine) as session:
        trigger = session.exec(
            select(FlowTrigger).where(
                FlowTrigger.incident_id == ref["id"], FlowTrigger.key == "open"
            )
        ).one()
        trigger.done_at = None
        session.add(trigger)
        session.commit()
    await run(rt)
    assert len(smtp_server.mails) == 1
    assert kinds(rt, ref["id"]).count("notified") == 2


async def test_escalation_fires_when_due_and_stops_on_acknowledge(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    await run(rt)
    http_sink.clear()
    with Session(rt.engine) as session:
        first = min(
            (
                t
                for t in session.exec(select(FlowTrigger)).all()
                if t.incident_id == ref["id"] and t.pending
            ),
            key=lambda t: t.due_at,
        )
    clock.freeze(first.due_at - timedelta(seconds=1))
    await run(rt)
    assert first.key in pending_keys(rt, ref["id"]), "nothing fires early"

    clock.freeze(first.due_at + timedelta(seconds=1))
    await run(rt)
    assert first.key not in pending_keys(rt, ref["id"])
    fired = [
        k for k in kinds(rt, ref["id"]) if k in {"escalated", "sla_breached", "customer_update"}
    ]
    assert len(fired) == 1
    assert http_sink.wait_for(1)

    chen = as_person(rt, "chen", roles=("agent",))
    client.post(f"/api/incidents/{ref['id']}/acknowledge", json={}, headers=chen)
    left = pending_keys(rt, ref["id"])
    assert not any(key.startswith("escalation:") for key in left)
    assert "response_due" not in left
    assert "resolution_due" in left


async def test_hold_pauses_the_resolution_timer_and_resume_moves_it(client, rt):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    await run(rt)

    def resolution_due() -> datetime | None:
        with Session(rt.engine) as session:
            trigger = session.exec(
                select(FlowTrigger).where(
                    FlowTrigger.incident_id == ref["id"], FlowTrigger.key == "resolution_due"
                )
            ).one()
            return trigger.due_at if trigger.pending else None

    before = resolution_due()
    client.post(f"/api/incidents/{ref['id']}/acknowledge", json={})
    clock.advance(timedelta(minutes=10))
    held = client.post(f"/api/incidents/{ref['id']}/hold", json={"note": "waiting for logs"})
    assert held.status_code == 200
    assert resolution_due() is None
    clock.advance(timedelta(hours=1))
    client.post(f"/api/incidents/{ref['id']}/resume", json={})
    assert resolution_due() == before + timedelta(hours=1)
    sla = client.get(f"/api/incidents/{ref['id']}/sla").json()
    assert sla["time_on_hold_seconds"] == 3600


@pytest.fixture
def follow_up_policy(rt) -> None:
    """routing.yaml as before survey callbacks: no `callback`, `follow_up: true` (the defaults
    call back in levels now: tests/callbacks/test_callback_e2e.py)."""
    survey = rt.policies.routing.survey.model_copy(update={"callback": None, "follow_up": True})
    routing = rt.policies.routing.model_copy(update={"survey": survey})
    rt.__dict__["policies"] = rt.policies.model_copy(update={"routing": routing})


async def test_resolution_sends_a_survey_and_a_low_score_opens_a_follow_up(
    follow_up_policy, client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    await run(rt)
    assignee = client.get(f"/api/incidents/{ref['id']}").json()["assignee"]
    smtp_server.clear()
    client.post(f"/api/incidents/{ref['id']}/resolve", json={"note": "restarted the service"})
    await run(rt)

    survey = next(m for m in smtp_server.wait_for(1) if "owner@example.com" in m.rcpt_tos)
    body = survey.message.get_body(("plain",)).get_content()
    link = next(word for word in body.split() if "/surveys/" in word)
    path = link[link.index("/surveys/") :]

    page = client.get(path)  # a mail scanner's GET decides nothing
    assert page.status_code == 200 and "<form" in page.text
    assert client.get(f"/api/incidents/{ref['id']}").json()["survey_score"] is None

    csrf = csrf_of(page.text)  # the form's CSRF field, sent back as a browser does
    tampered = client.post(path[:-3] + "abc", data={"score": "1", "csrf": csrf})
    assert tampered.status_code == 400

    unforged = client.post(path, data={"score": "1"})  # no CSRF field: nothing recorded
    assert unforged.status_code == 403
    answered = client.post(path, data={"score": "1", "comment": "took <b>ages</b>", "csrf": csrf})
    assert answered.status_code == 200
    again = client.post(path, data={"score": "5", "csrf": csrf})
    assert again.text.count("already been recorded") == 1
    assert client.get(f"/api/incidents/{ref['id']}").json()["survey_score"] == 1

    await run(rt)
    with Session(rt.engine) as session:
        follow_up = session.exec(select(Incident).where(Incident.parent_id == ref["id"])).one()
        assert follow_up.priority == "P3"
        assert follow_up.assignee == assignee
    assert "follow_up_opened" in kinds(rt, ref["id"])


async def test_a_notification_that_finally_fails_is_on_the_timeline(
    client, rt, smtp_server, http_sink
):
    rt.settings.notify_retry_delays = [0.1]
    http_sink.status = 500
    smtp_server.stop()
    ref = open_incident(client)
    runner = await run(rt)
    assert runner.failed == 0, "the flow records the failure and goes on"
    with Session(rt.engine) as session:
        failures = {
            (entry.data["key"], entry.data["channel"])
            for entry in get_timeline(session=session, incident_id=ref["id"])
            if entry.kind == "notification_failed"
        }
    assert {("opened", "email"), ("opened", "chat")} <= failures
    assert "sla_started" in kinds(rt, ref["id"])


async def test_unanswered_p1_climbs_the_chain_and_updates_every_30_minutes(
    client, rt, smtp_server, http_sink
):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client)
    await run(rt)
    smtp_server.clear()

    clock.freeze(MONDAY_MORNING + timedelta(minutes=31))
    await run(rt)
    timeline = kinds(rt, ref["id"])
    assert timeline.count("escalated") == 6  # 5m, 10m, 15m, 20m, 25m, 30m of the P1 chain
    assert timeline.count("sla_breached") == 1  # no response within 30 minutes
    # The reporter's update replaced the assignee's progress reminder (issue 15, item 3).
    assert timeline.count("customer_update") == 1
    recipients = {rcpt for mail in smtp_server.mails for rcpt in mail.rcpt_tos}
    assert {"chen@example.com", "zhou@example.com"} <= recipients  # group lead, manager
    assert "owner@example.com" in recipients  # the reporter's update
    pending = pending_keys(rt, ref["id"])
    assert "customer_update:2" in pending and "customer_update:1" not in pending

    with Session(rt.engine) as session:
        lateness = [
            entry.data["late_seconds"]
            for entry in get_timeline(session=session, incident_id=ref["id"])
            if entry.kind == "escalated"
        ]
    assert min(lateness) >= 0, "nothing fired before its time"

    client.post(f"/api/incidents/{ref['id']}/resolve", json={"note": "fixed"})
    assert not (pending_keys(rt, ref["id"]) - {"resolved:1"})
