"""The survey callback end to end: the reporter answers "unsatisfied" through the real signed
link, the runner mails level 1 over real SMTP, the level's person records "not satisfied" by the
API and level 2 is mailed, level 2's deadline lapses on the test clock and level 3 takes over;
the monthly report counts it all. On the real Prefect test server and gateway app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.models import Incident, get_timeline, list_callbacks
from itilflow.reports import compute_report
from tests.support.csrf import csrf_of
from tests.support.principals import as_person

pytestmark = pytest.mark.usefixtures("prefect_server")

MONDAY_MORNING = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Asia/Shanghai


async def run(rt) -> Runner:
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0
    return runner


def kinds(rt, incident_id: int) -> list[str]:
    with Session(rt.engine) as session:
        return [entry.kind for entry in get_timeline(session=session, incident_id=incident_id)]


def levels(rt, incident_id: int):
    with Session(rt.engine) as session:
        return list_callbacks(session=session, incident_id=incident_id)


def callback_mail(smtp_server, level: int):
    """The one mail of `level`'s call (the subject says "[Callback level/3]")."""
    mails = [m for m in smtp_server.mails if f"[Callback {level}/3]" in m.message["Subject"]]
    assert len(mails) == 1, [m.message["Subject"] for m in smtp_server.mails]
    return mails[0]


async def answer_unsatisfied(client, rt, smtp_server) -> dict:
    """Open, resolve and survey an incident; the reporter answers 1 through the mailed link."""
    created = client.post(
        "/api/incidents",
        json={
            "title": "Payment module fails",
            "category": "software",
            "impact": "high",
            "urgency": "high",
            "reporter_email": "owner@example.com",
        },
    )
    ref = created.json()
    await run(rt)
    client.post(f"/api/incidents/{ref['id']}/resolve", json={"note": "restarted the service"})
    await run(rt)
    survey = next(m for m in smtp_server.wait_for(2) if "owner@example.com" in m.rcpt_tos)
    body = survey.message.get_body(("plain",)).get_content()
    link = next(word for word in body.split() if "/surveys/" in word)
    path = link[link.index("/surveys/") :]
    csrf = csrf_of(client.get(path).text)
    answered = client.post(path, data={"score": "1", "comment": "took ages", "csrf": csrf})
    assert answered.status_code == 200
    smtp_server.clear()
    return client.get(f"/api/incidents/{ref['id']}").json()


async def test_an_unsatisfied_reporter_is_called_back_level_by_level(client, rt, smtp_server):
    clock.freeze(MONDAY_MORNING)
    incident = await answer_unsatisfied(client, rt, smtp_server)
    incident_id, assignee = incident["id"], incident["assignee"]
    assert assignee in {"chen", "liu"}  # applications; its lead is chen

    # Level 1 started with the answer: the engineer who handled it, one working day.
    [first] = levels(rt, incident_id)
    assert (first.level, first.who, first.assignee) == (1, "engineer", assignee)
    assert first.due_at == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 Shanghai
    with Session(rt.engine) as session:  # the callback replaces the follow-up incident
        assert session.exec(select(Incident).where(Incident.parent_id == incident_id)).all() == []
    await run(rt)
    mail = callback_mail(smtp_server, 1)
    assert mail.rcpt_tos == (f"{assignee}@example.com",)
    text = mail.message.get_body(("plain",)).get_content()
    assert "took ages" in text and f"/incidents/{incident['number']}/callbacks" in text

    # Only the level's person (or their lead, or an admin) records it: wang leads hardware.
    url = f"/api/incidents/{incident_id}/callbacks/1"
    outsider = client.post(
        url, json={"outcome": "satisfied"}, headers=as_person(rt, "wang", ("group_lead",))
    )
    assert outsider.status_code == 403
    reporter = client.post(
        url, json={"outcome": "satisfied"}, headers=as_person(rt, "li", ("reporter",))
    )
    assert reporter.status_code == 403
    assert levels(rt, incident_id)[0].outcome is None

    person = as_person(rt, assignee, ("agent",))
    recorded = client.post(
        url, json={"outcome": "not_satisfied", "note": "wants a root cause"}, headers=person
    )
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["recorded_by"] == assignee
    again = client.post(url, json={"outcome": "satisfied"}, headers=person)
    assert again.status_code == 409

    # Level 2: the group lead, mailed with what level 1 ended with.
    await run(rt)
    second = levels(rt, incident_id)[1]
    assert (second.who, second.assignee) == ("group_lead", "chen")
    mail = callback_mail(smtp_server, 2)
    assert mail.rcpt_tos == ("chen@example.com",)
    assert "wants a root cause" in mail.message.get_body(("plain",)).get_content()

    # Nothing recorded by level 2's deadline: it lapses and the expert (dba's lead) takes over.
    clock.freeze(second.due_at - timedelta(seconds=1))
    await run(rt)
    assert len(levels(rt, incident_id)) == 2, "nothing lapses early"
    clock.freeze(second.due_at + timedelta(seconds=1))
    await run(rt)
    first, second, third = levels(rt, incident_id)
    assert second.lapsed_at is not None and second.outcome is None
    assert (third.who, third.assignee) == ("expert", "sun")
    assert callback_mail(smtp_server, 3).rcpt_tos == ("sun@example.com",)

    # An admin records level 3: satisfied, the callback ends.
    done = client.post(f"/api/incidents/{incident_id}/callbacks/3", json={"outcome": "satisfied"})
    assert done.status_code == 200, done.text
    await run(rt)
    assert len(levels(rt, incident_id)) == 3 and len(smtp_server.mails) == 3
    timeline = [k for k in kinds(rt, incident_id) if k.startswith("callback")]
    assert timeline == [
        "callback_started",
        "callback_level_started",
        "callback_outcome",
        "callback_level_started",
        "callback_lapsed",
        "callback_level_started",
        "callback_outcome",
        "callback_resolved",
    ]
    listed = client.get(f"/api/incidents/{incident_id}/callbacks").json()
    assert [(c["level"], c["outcome"], c["late"]) for c in listed] == [
        (1, "not_satisfied", False),
        (2, None, True),
        (3, "satisfied", False),
    ]

    # The monthly report counts it: started, resolved at level 3, one level late.
    report = compute_report(rt.engine, rt.policies, period="2026-11", now=clock.now())
    month = report.section("callbacks").data.current
    assert (month.started, month.resolved_at, month.unresolved, month.under_way) == (
        1,
        {3: 1},
        0,
        0,
    )
    assert month.late_levels == 1
