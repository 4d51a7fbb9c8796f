"""Progress updates to the customer end to end: the real gateway app (API and a signed-in
console), the runner firing the durable timer on the real Prefect test server, and the mails
through the delivery pipeline to the real SMTP peer, with the test clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.flows import incident as incident_flow
from itilflow.gateway.app import create_app
from itilflow.models import Engineer, FlowTrigger, get_timeline, session_scope
from tests.console.support import sign_in
from tests.support.csrf import csrf_of

# Marked for the PostgreSQL run too: the update planning reads the timeline and the directory.
pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.postgres]

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Asia/Shanghai
REPORTER = "owner@example.com"
COMMENT = "We found the cause: a stuck lock on the payment database. Fix within the hour."


@pytest.fixture
def app(rt: Any) -> Any:
    return create_app(rt.settings, rt.policies)


@pytest.fixture
def api(app: Any, rt: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {rt.settings.api_token.get_secret_value()}"
        yield client


@pytest.fixture
def browser(app: Any) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def open_p1(api: TestClient, reporter: str = REPORTER) -> dict[str, Any]:
    answer = api.post(
        "/api/incidents",
        json={
            "title": "Payment module fails",
            "category": "software",
            "impact": "high",
            "urgency": "high",
            "reporter_email": reporter,
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def run(rt: Any) -> None:
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0


def comment_to_reporter(browser: TestClient, number: str, note: str) -> None:
    """The console's "comment to the reporter", pressed and confirmed as a person does."""
    page = browser.get(f"/incidents/{number}")
    form = {"action": "comment", "note": note, "visibility": "public", "csrf": csrf_of(page.text)}
    asked = browser.post(f"/incidents/{number}", data=form)
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', asked.text))
    assert browser.post(f"/incidents/{number}", data=hidden).status_code == 303


def updates_to(smtp_server: Any, address: str) -> list[Any]:
    return [
        mail
        for mail in smtp_server.mails
        if address in mail.rcpt_tos and "Progress update" in mail.message["Subject"]
    ]


def reminders_to(smtp_server: Any, address: str) -> list[Any]:
    return [
        mail
        for mail in smtp_server.mails
        if address in mail.rcpt_tos and "Nothing new for the reporter" in mail.message["Subject"]
    ]


def text_of(mail: Any) -> str:
    return mail.message.get_body(("plain",)).get_content()


def update_entries(rt: Any, incident_id: int) -> list[dict[str, Any]]:
    with Session(rt.engine) as session:
        return [
            dict(entry.data)
            for entry in get_timeline(session=session, incident_id=incident_id)
            if entry.kind == "customer_update"
        ]


def update_timers(rt: Any, incident_id: int) -> dict[str, FlowTrigger]:
    with Session(rt.engine) as session:
        rows = session.exec(
            select(FlowTrigger).where(
                FlowTrigger.incident_id == incident_id, FlowTrigger.kind == "customer_update"
            )
        ).all()
        return {row.key: row for row in rows}


def pending_update(rt: Any, incident_id: int) -> FlowTrigger | None:
    pending = [t for t in update_timers(rt, incident_id).values() if t.pending]
    assert len(pending) <= 1, "one update pending at a time"
    return pending[0] if pending else None


async def test_a_p1_reporter_hears_every_30_minutes_until_hold_and_after_resume(
    api, browser, rt, smtp_server, monkeypatch
):
    clock.freeze(T0)
    ref = open_p1(api)
    incident_id, number = ref["id"], ref["number"]
    await run(rt)
    assignee = api.get(f"/api/incidents/{incident_id}").json()["assignee"]
    assignee_mail = f"{assignee}@example.com"
    assert api.post(f"/api/incidents/{incident_id}/acknowledge", json={}).status_code == 200
    assert pending_update(rt, incident_id).due_at == T0 + timedelta(minutes=30)

    # The assignee writes to the reporter from the console; the timer does not move for it.
    clock.freeze(T0 + timedelta(minutes=10))
    sign_in(rt, browser, assignee, ["agent"])
    comment_to_reporter(browser, number, COMMENT)
    smtp_server.clear()

    clock.freeze(T0 + timedelta(minutes=29, seconds=59))
    await run(rt)
    assert updates_to(smtp_server, REPORTER) == [], "nothing before its time"

    # 30 minutes: the reporter's mail, with the comment, the status, the owner and the link.
    clock.freeze(T0 + timedelta(minutes=30, seconds=1))
    await run(rt)
    [first] = updates_to(smtp_server, REPORTER)
    assert number in first.message["Subject"]
    body = text_of(first)
    assert COMMENT in body and "What's new" in body
    assert "being worked on" in body  # acknowledged, as a customer reads it
    assert "Chen Jie" in body or "Liu Yang" in body  # the owner, by name
    assert f"http://testserver/incidents/{number}" in body  # the reporter's incident page
    assert reminders_to(smtp_server, assignee_mail) == [], "there was news: no reminder"
    [entry] = update_entries(rt, incident_id)
    assert (entry["news"], entry["reminded"], entry["to_reporter"]) == (True, False, True)
    # Never two updates for one due time: a runner again at the same moment sends nothing.
    await run(rt)
    assert len(updates_to(smtp_server, REPORTER)) == 1
    second_due = pending_update(rt, incident_id).due_at
    assert second_due == T0 + timedelta(minutes=60, seconds=1)

    # Nothing new since: the reporter still hears (no news), and the assignee is reminded.
    smtp_server.clear()
    clock.freeze(second_due + timedelta(seconds=1))
    await run(rt)
    [second] = updates_to(smtp_server, REPORTER)
    assert "Nothing new since our last update" in text_of(second)
    assert COMMENT in text_of(second)  # the latest note, still
    [reminder] = reminders_to(smtp_server, assignee_mail)
    assert number in reminder.message["Subject"]
    assert update_entries(rt, incident_id)[-1]["reminded"] is True

    # On hold: the update is cancelled, and nothing is sent however long the hold.
    smtp_server.clear()
    clock.freeze(T0 + timedelta(minutes=70))
    held = api.post(f"/api/incidents/{incident_id}/hold", json={"note": "waiting for the vendor"})
    assert held.status_code == 200
    assert pending_update(rt, incident_id) is None
    clock.freeze(T0 + timedelta(minutes=125))
    await run(rt)
    assert updates_to(smtp_server, REPORTER) == []

    # Resumed: the updates start again an interval after the resume.
    clock.freeze(T0 + timedelta(minutes=130))
    assert api.post(f"/api/incidents/{incident_id}/resume", json={}).status_code == 200
    third = pending_update(rt, incident_id)
    assert (third.key, third.due_at) == ("customer_update:3", T0 + timedelta(minutes=160))

    # A run that dies after the mail went out is run again: still one mail, one entry.
    original, calls = incident_flow.record_sla_timers, []

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("the run died after delivering")
        return original(*args, **kwargs)

    monkeypatch.setattr(incident_flow, "record_sla_timers", dies_once)
    clock.freeze(T0 + timedelta(minutes=160, seconds=1))
    await run(rt)
    assert len(calls) == 2, "the flow's retry recorded it"
    assert len(updates_to(smtp_server, REPORTER)) == 1
    assert len(update_entries(rt, incident_id)) == 3

    # Resolved: no update is pending, and none goes out later (the survey does).
    clock.freeze(T0 + timedelta(minutes=170))
    smtp_server.clear()
    answer = api.post(f"/api/incidents/{incident_id}/resolve", json={"note": "lock cleared"})
    assert answer.status_code == 200
    assert pending_update(rt, incident_id) is None
    clock.freeze(T0 + timedelta(hours=5))
    await run(rt)
    assert updates_to(smtp_server, REPORTER) == []
    assert any("How did we do" in mail.message["Subject"] for mail in smtp_server.mails)


async def test_the_reporter_reads_it_in_their_language_the_assignee_in_the_incidents(
    api, app, rt, smtp_server
):
    with session_scope(rt.engine) as session:
        li = session.get(Engineer, "li")
        assert li is not None
        li.language = "zh_CN"
        session.add(li)
    clock.freeze(T0)
    ref = open_p1(api, reporter="li@example.com")
    await run(rt)
    assignee = api.get(f"/api/incidents/{ref['id']}").json()["assignee"]
    smtp_server.clear()

    clock.freeze(T0 + timedelta(minutes=30, seconds=1))
    await run(rt)
    [update] = [mail for mail in smtp_server.mails if "li@example.com" in mail.rcpt_tos]
    assert update.message["Subject"].startswith("处理进展")
    assert "暂无新进展" in text_of(update)  # nobody has written to them yet
    assert reminders_to(smtp_server, f"{assignee}@example.com"), "English, the incident's"

    # The mail's link is the incident's page: the reporter signed in reads it, nobody else does.
    link = next(word for word in text_of(update).split() if "/incidents/" in word)
    path = link[link.index("/incidents/") :]
    for person, status in (("li", 200), ("wang", 404)):
        with TestClient(app, follow_redirects=False) as browser:
            sign_in(rt, browser, person, ["reporter"])
            page = browser.get(path)
            assert page.status_code == status, person
            assert (ref["number"] in page.text) == (status == 200)
