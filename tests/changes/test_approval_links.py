"""Approval links: only the approver's POST on a live link, with the one-time code mailed to the
approver's own address, decides, once; everything else shows a clear page and changes nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import Session, func, select

from itilflow import clock, signing
from itilflow.gateway.app import create_app
from itilflow.models import ApprovalCode, ApprovalRequest, ChangeEntry, session_scope
from itilflow.policies import ApprovalLinks
from itilflow.services import changes
from tests.support.approval_codes import codes_sent_to, make_waiting_change, wait_for_code
from tests.support.csrf import post_form

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
    return make_waiting_change(rt, PLAN, risk_level="low")


def decisions(rt) -> list[tuple[str, str | None]]:
    with Session(rt.engine) as session:
        return [(r.approver, r.decision) for r in session.exec(select(ApprovalRequest))]


def entries(rt) -> int:
    with Session(rt.engine) as session:
        return session.exec(select(func.count()).select_from(ChangeEntry)).one()


def post(client, token: str, decision: str = "approve", code: str | None = None):
    data = {"decision": decision, "comment": "ok"} | ({"code": code} if code else {})
    return post_form(client, f"/approvals/{token}", data)


def ask_for_code(client, smtp_server, token: str, decision: str = "approve") -> str:
    """Press the button, as the approver would, and read the code from chen's mail."""
    before = len(codes_sent_to(smtp_server, "chen@example.com"))
    response = post(client, token, decision)
    assert response.status_code == 200, response.text
    return wait_for_code(smtp_server, "chen@example.com", nth=before + 1)


def test_a_scanner_fetching_the_link_decides_nothing(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    before = entries(rt)
    for _ in range(3):
        page = client.get(f"/approvals/{tokens['chen']}?decision=approve")
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert client.head(f"/approvals/{tokens['chen']}").status_code in (200, 405)
    assert smtp_server.mails == []  # and sends nothing
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert entries(rt) == before


def test_the_button_mails_a_code_and_only_the_code_decides_once(
    client, rt, waiting_change, smtp_server
):
    _, tokens = waiting_change
    pressed = post(client, tokens["chen"])
    assert pressed.status_code == 200 and "c***@example.com" in pressed.text
    assert "chen@example.com" not in pressed.text  # the page shows the address masked
    code = wait_for_code(smtp_server, "chen@example.com")
    assert code not in pressed.text
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert post(client, tokens["chen"], code=code).status_code == 200
    replay = post(client, tokens["chen"], "reject", code=code)
    assert replay.status_code == 409 and "already used" in replay.text
    assert decisions(rt) == [("chen", "approve"), ("sun", None)]


def test_a_forwarded_link_mails_the_code_to_its_approver_only(
    client, rt, waiting_change, smtp_server
):
    _, tokens = waiting_change
    # sun got chen's mail forwarded and presses the button, naming himself wherever he can.
    post_form(
        client,
        f"/approvals/{tokens['chen']}",
        {"decision": "approve", "email": "sun@example.com", "approver": "sun"},
        headers={"From": "sun@example.com"},
    )
    smtp_server.wait_for(1)
    assert [m.rcpt_tos for m in smtp_server.mails] == [("chen@example.com",)]
    for guess in ("000000", "123456", "999999"):
        assert post(client, tokens["chen"], code=guess).status_code == 409
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_five_wrong_codes_void_the_code(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [post(client, tokens["chen"], code=wrong) for _ in range(5)]
    assert [a.status_code for a in answers] == [409] * 5
    assert "4 attempts left" in answers[0].text, answers[0].text[-900:]
    assert "now void" in answers[-1].text
    late = post(client, tokens["chen"], code=code)  # the right one, too late
    assert late.status_code == 409 and "no valid code" in late.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_a_code_for_approve_cannot_reject(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"], "approve")
    refused = post(client, tokens["chen"], "reject", code=code)
    assert refused.status_code == 409 and "asked to approve, not to reject" in refused.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_codes_are_rate_limited_and_a_new_one_voids_the_old(
    client, rt, waiting_change, smtp_server
):
    _, tokens = waiting_change
    first = ask_for_code(client, smtp_server, tokens["chen"])
    again = post(client, tokens["chen"])
    assert again.status_code == 429 and "less than 1m ago" in again.text
    assert len(codes_sent_to(smtp_server, "chen@example.com")) == 1
    clock.advance(rt.policies.change.approval_links.code_resend_after + timedelta(seconds=1))
    second = ask_for_code(client, smtp_server, tokens["chen"])
    if first != second:  # one in a million they are equal
        assert post(client, tokens["chen"], code=first).status_code == 409
    assert post(client, tokens["chen"], code=second).status_code == 200


def test_a_code_expires(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"])
    clock.advance(rt.policies.change.approval_links.code_valid_for + timedelta(seconds=1))
    late = post(client, tokens["chen"], code=code)
    assert late.status_code == 409 and "no valid code" in late.text
    assert decisions(rt) == [("chen", None), ("sun", None)]


def test_codes_are_stored_hashed(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"])
    with Session(rt.engine) as session:
        (row,) = session.exec(select(ApprovalCode)).all()
    assert code not in row.code_hash and len(row.code_hash) == 64


def test_when_the_code_mail_fails_nothing_is_decided_and_the_button_works_again(
    client, rt, waiting_change, smtp_server
):
    _, tokens = waiting_change
    smtp_server.fail_with("451 4.3.0 try again later")
    failed = post(client, tokens["chen"])
    assert failed.status_code == 503 and "could not be sent" in failed.text
    assert "nothing was decided" in failed.text and "c***@example.com" in failed.text
    smtp_server.fail_with(None)
    code = ask_for_code(client, smtp_server, tokens["chen"])  # no rate limit after a failure
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert post(client, tokens["chen"], code=code).status_code == 200


def test_with_confirm_by_code_off_the_button_decides(rt, waiting_change, smtp_server):
    from fastapi.testclient import TestClient

    change_policy = rt.policies.change.model_copy(
        update={"approval_links": ApprovalLinks(confirm_by_code=False)}
    )
    policies = rt.policies.model_copy(update={"change": change_policy})
    _, tokens = waiting_change
    with TestClient(create_app(rt.settings, policies)) as client:
        assert post(client, tokens["chen"]).status_code == 200
    assert decisions(rt) == [("chen", "approve"), ("sun", None)]
    assert smtp_server.mails == []


def test_a_double_click_records_one_decision(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"])
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(post(client, tokens["chen"], code=code).status_code)
        )
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


def test_editing_the_change_voids_every_outstanding_link(client, rt, waiting_change, smtp_server):
    change, tokens = waiting_change
    code = ask_for_code(client, smtp_server, tokens["chen"])
    with session_scope(rt.engine) as session:
        fresh = changes.load_change(session, change.id)
        changes.edit_change(
            session=session, change=fresh, changes={"title": "Rotate it"}, actor="test"
        )
    for token in tokens.values():
        response = post(client, token)
        assert response.status_code == 409 and "changed after this link was sent" in response.text
    assert post(client, tokens["chen"], code=code).status_code == 409
    with Session(rt.engine) as session:
        assert all(c.voided_at for c in session.exec(select(ApprovalCode)))
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


def test_an_unknown_decision_is_refused(client, rt, waiting_change, smtp_server):
    _, tokens = waiting_change
    response = post(client, tokens["chen"], "maybe")
    assert response.status_code == 409 and "unknown decision" in response.text
    assert decisions(rt) == [("chen", None), ("sun", None)]
    assert smtp_server.mails == []  # no code for a decision that does not exist


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
    from itilflow.notifications import RenderedMessage, asend_email
    from itilflow.tasks.change.plan_approval_reminders import plan_approval_reminders

    async def send_approval_reminders() -> int:
        # The plans as the delivery pipeline sends them (tests/changes/test_change_notifications
        # runs them through it).
        reminders = plan_approval_reminders.fn()
        for plan in reminders:
            message = RenderedMessage(**plan["message"])
            await asend_email(message, to=plan["emails"], settings=rt.mail)
        return len(reminders)

    timing = rt.policies.change.timing
    assert await send_approval_reminders() == 0  # nothing is due yet
    clock.advance(timing.remind_every + timedelta(minutes=1))
    assert await send_approval_reminders() == 2  # chen and sun
    assert await send_approval_reminders() == 0  # not again before the next interval
    clock.advance(timing.escalate_after - timing.remind_every)
    sent = await send_approval_reminders()
    assert sent == 4  # both again, and the escalation contact once per request
    recipients = sorted(r for m in smtp_server.wait_for(6) for r in m.rcpt_tos)
    assert recipients.count("zhou@example.com") == 2
    assert all("Reminder" in m.message["Subject"] for m in smtp_server.mails)
