"""Approval links: only the approver's POST on a live link decides, once; everything else shows
a clear page and changes nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, func, select

from itilflow import changes, clock, signing
from itilflow.models import ApprovalRequest, ChangeEntry, ChangeStatus, session_scope

PLAN = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}


@pytest.fixture
def waiting_change(rt):
    """A change awaiting its technical lead, with one live link per approver."""
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(title="Rotate TLS certificate", plan=PLAN),
            actor="test",
        )
        change.status = ChangeStatus.awaiting_approval
        change.risk_level = "low"
        tokens = {}
        for approver in ("chen", "sun"):
            request = changes.create_approval_request(
                session=session,
                change=change,
                stage="technical-lead",
                approver=approver,
                policies=rt.policies,
            )
            tokens[approver] = changes.approval_token(
                request, secret=rt.secret, policies=rt.policies
            )
    return change, tokens


def decisions(rt) -> list[tuple[str, str | None]]:
    with Session(rt.engine) as session:
        return [(r.approver, r.decision) for r in session.exec(select(ApprovalRequest))]


def entries(rt) -> int:
    with Session(rt.engine) as session:
        return session.exec(select(func.count()).select_from(ChangeEntry)).one()


def post(client, token: str, decision: str = "approve"):
    return client.post(f"/approvals/{token}", data={"decision": decision, "comment": "ok"})


def test_a_scanner_fetching_the_link_decides_nothing(client, rt, waiting_change):
    _, tokens = waiting_change
    before = entries(rt)
    for _ in range(3):
        page = client.get(f"/approvals/{tokens['chen']}?decision=approve")
        assert page.status_code == 200 and '<form method="post">' in page.text
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert entries(rt) == before


def test_the_approvers_post_decides_once(client, rt, waiting_change):
    _, tokens = waiting_change
    assert post(client, tokens["chen"]).status_code == 200
    replay = post(client, tokens["chen"], "reject")
    assert replay.status_code == 409 and "already used" in replay.text
    assert decisions(rt) == [("chen", "approve"), ("sun", None)]


def test_a_double_click_records_one_decision(client, rt, waiting_change):
    _, tokens = waiting_change
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(client, tokens["sun"]).status_code))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 409, 409, 409]
    with Session(rt.engine) as session:
        recorded = session.exec(select(ChangeEntry).where(ChangeEntry.kind == "approved")).all()
        assert len(recorded) == 1


@pytest.mark.parametrize(
    ("mangle", "status", "says"),
    [
        (lambda t, rt: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), 400, "altered"),
        (lambda t, rt: t.replace(".", ".x", 1), 400, "altered"),
        (lambda t, rt: "garbage", 400, "incomplete"),
        (
            lambda t, rt: signing.sign(
                {"request": 1, "nonce": "n", "change": 1, "version": 1, "approver": "chen"},
                secret="someone else's key",
                purpose="approval",
                valid_for=timedelta(days=1),
            ),
            400,
            "altered",
        ),
        (
            lambda t, rt: signing.sign(
                {"request": 1, "nonce": "guessed", "change": 1, "version": 1, "approver": "chen"},
                secret=rt.secret,
                purpose="approval",
                valid_for=timedelta(days=1),
            ),
            400,
            "does not match",
        ),
        (
            lambda t, rt: signing.sign(
                {"incident": 1}, secret=rt.secret, purpose="survey", valid_for=timedelta(days=1)
            ),
            400,
            "not for this page",
        ),
    ],
    ids=[
        "tampered-signature",
        "tampered-payload",
        "garbage",
        "foreign-key",
        "forged-nonce",
        "survey-token",
    ],
)
def test_bad_links_show_a_clear_page_and_change_nothing(
    client, rt, waiting_change, mangle, status, says
):
    _, tokens = waiting_change
    before = entries(rt)
    bad = mangle(tokens["chen"], rt)
    for response in (client.get(f"/approvals/{bad}"), post(client, bad)):
        assert response.status_code in (status, 409), response.text
        assert says in response.text
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert entries(rt) == before


def test_an_expired_link_decides_nothing(client, rt, waiting_change):
    _, tokens = waiting_change
    clock.advance(rt.policies.change.timing.link_valid_for + timedelta(minutes=1))
    response = post(client, tokens["chen"])
    assert response.status_code == 400 and "expired" in response.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_editing_the_change_voids_every_outstanding_link(client, rt, waiting_change):
    change, tokens = waiting_change
    with session_scope(rt.engine) as session:
        fresh = changes.load_change(session, change.id)
        changes.edit_change(
            session=session, change=fresh, changes={"title": "Rotate it"}, actor="test"
        )
    for token in tokens.values():
        response = post(client, token)
        assert response.status_code == 409 and "changed after this link was sent" in response.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_a_cancelled_change_takes_no_decision(client, rt, waiting_change):
    change, tokens = waiting_change
    response = client.post(f"/api/changes/{change.number}/cancel", json={"note": "not needed"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    page = client.get(f"/approvals/{tokens['sun']}")
    assert page.status_code == 409
    refused = post(client, tokens["sun"])
    assert refused.status_code == 409
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_an_unknown_decision_is_refused(client, rt, waiting_change):
    _, tokens = waiting_change
    response = post(client, tokens["chen"], "maybe")
    assert response.status_code == 409 and "unknown decision" in response.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_bad_change_requests_are_refused_and_store_nothing(client, rt):
    cases = [
        ({"title": "x", "plan": {"steps": []}}, "steps"),
        (
            {
                "title": "x",
                "plan": {"steps": [{"name": "a", "do": {"kind": "shell", "command": "true"}}]},
            },
            "no undo",
        ),
        ({"title": "x", "plan": PLAN, "category": "urgent"}, "category"),
        ({"title": "x", "plan": PLAN, "planned_start": "2026-11-24T22:00:00"}, "timezone"),
        (
            {
                "title": "x",
                "plan": {
                    "steps": [
                        {
                            "name": "a",
                            "do": {"kind": "http", "url": "file:///etc/passwd"},
                            "undo": {"kind": "shell", "command": "true"},
                        }
                    ]
                },
            },
            "http",
        ),
    ]
    for body, says in cases:
        response = client.post("/api/changes", json=body)
        assert response.status_code == 422, response.text
        assert says in response.text.lower(), response.text
    with Session(rt.engine) as session:
        assert session.exec(select(func.count()).select_from(ChangeEntry)).one() == 0


async def test_unanswered_approvers_are_reminded_then_escalated(rt, waiting_change, smtp_server):
    from itilflow.tasks.remind_approvers import send_approval_reminders

    timing = rt.policies.change.timing
    assert await send_approval_reminders.fn() == 0  # nothing is due yet
    clock.advance(timing.remind_every + timedelta(minutes=1))
    assert await send_approval_reminders.fn() == 2  # chen and sun
    assert await send_approval_reminders.fn() == 0  # not again before the next interval
    clock.advance(timing.escalate_after - timing.remind_every)
    sent = await send_approval_reminders.fn()
    assert sent == 4  # both again, and the escalation contact once per request
    recipients = sorted(r for m in smtp_server.wait_for(6) for r in m.rcpt_tos)
    assert recipients.count("zhou@example.com") == 2
    assert all("Reminder" in m.message["Subject"] for m in smtp_server.mails)
