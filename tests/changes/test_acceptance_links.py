"""Acceptance links: only the requester (by the mailed code, or signed in) or a change manager on
their behalf decides, once; a rejection needs a reason; anyone else is refused on the record.
The gateway's real pages and the real SMTP peer; no engine (the flows have tests of their own)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from itilflow import clock
from itilflow.gateway.app import create_app
from itilflow.models import ApprovalRequest, ChangeEntry, ChangeStatus, session_scope
from itilflow.policies import Acceptance
from itilflow.services import changes
from itilflow.services.changes import acceptance
from tests.console.support import sign_in
from tests.support.approval_codes import wait_for_code
from tests.support.change_policy import use_change_policy
from tests.support.csrf import post_form
from tests.support.smtp import free_port

PLAN = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}
REVIEW = {
    "outcome": "successful",
    "actions": [
        {"phase": "step", "name": "noop", "ok": True, "summary": "exit 0", "seconds": 0.1},
        {"phase": "verify", "name": "health", "ok": True, "summary": "200 ok", "seconds": 0.1},
    ],
}


def verified_change(rt, requester: str, email: str | None = None) -> tuple[int, str]:
    """A change implemented and verified, waiting for `requester`: its id and link token."""
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(
                title="Open the new checkout",
                plan=PLAN,
                requester=requester,
                requester_email=email,
            ),
            actor="test",
        )
        change.review = REVIEW
        request = acceptance.ask_for_acceptance(
            session=session, change=change, policies=rt.policies
        )
        token = acceptance.acceptance_token(request, secret=rt.secret)
        assert change.id is not None
        return change.id, token


def state(rt, change_id: int) -> tuple[str, int, list[str]]:
    with Session(rt.engine) as session:
        change = changes.load_change(session, change_id)
        kinds = [
            e.kind
            for e in session.exec(select(ChangeEntry).where(ChangeEntry.change_id == change_id))
        ]
        return change.status.value, change.version, kinds


@pytest.fixture
def page_client(rt):
    use_change_policy(rt, acceptance=Acceptance(required=True, on_reject="close"))
    with TestClient(create_app(rt.settings, rt.policies)) as browser:
        yield browser


def test_a_get_decides_nothing_and_shows_what_was_done(rt, page_client, smtp_server):
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    shown = page_client.get(f"/acceptance/{token}?decision=accept")
    assert shown.status_code == 200
    assert "noop" in shown.text and "health" in shown.text and "o***@example.com" in shown.text
    assert smtp_server.mails == []
    assert state(rt, change_id)[0] == "awaiting_signoff"


def test_the_code_mailed_to_the_requester_accepts_once(rt, page_client, smtp_server):
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    pressed = post_form(page_client, f"/acceptance/{token}", {"decision": "accept"})
    assert pressed.status_code == 200 and 'id="code"' in pressed.text
    assert state(rt, change_id)[0] == "awaiting_signoff"
    code = wait_for_code(smtp_server, "owner@example.com")
    for guess in ("000000", "999999"):
        if guess != code:
            assert (
                post_form(
                    page_client, f"/acceptance/{token}", {"decision": "accept", "code": guess}
                ).status_code
                == 409
            )
    done = post_form(page_client, f"/acceptance/{token}", {"decision": "accept", "code": code})
    assert done.status_code == 200 and "accepted and closed" in done.text
    status, _, kinds = state(rt, change_id)
    assert status == "successful" and {"verified", "accepted"} <= set(kinds)
    replay = post_form(page_client, f"/acceptance/{token}", {"decision": "reject", "code": code})
    assert replay.status_code == 409 and "already used" in replay.text


def test_a_rejection_needs_a_reason_and_closes_by_the_policy(rt, page_client, smtp_server):
    change_id, token = verified_change(rt, "li")
    sign_in(rt, page_client, "li")
    blank = post_form(page_client, f"/acceptance/{token}", {"decision": "reject", "reason": " "})
    assert blank.status_code == 409 and "needs a reason" in blank.text
    assert state(rt, change_id)[0] == "awaiting_signoff"
    done = post_form(
        page_client, f"/acceptance/{token}", {"decision": "reject", "reason": "orders fail"}
    )
    assert done.status_code == 200, done.text
    status, _, kinds = state(rt, change_id)
    assert status == "customer_rejected" and "customer_rejected" in kinds
    assert smtp_server.mails == []  # signed in: no code needed


def test_someone_else_signed_in_is_refused_on_the_record(rt, page_client, smtp_server):
    change_id, token = verified_change(rt, "li")
    sign_in(rt, page_client, "wang", ["agent", "approver"])
    assert page_client.get(f"/acceptance/{token}").status_code == 403
    refused = post_form(page_client, f"/acceptance/{token}", {"decision": "accept"})
    assert refused.status_code == 403
    status, _, kinds = state(rt, change_id)
    assert status == "awaiting_signoff" and "acceptance_refused" in kinds
    assert smtp_server.mails == []


def test_a_change_manager_accepts_on_the_requesters_behalf(rt, page_client):
    change_id, token = verified_change(rt, "li")
    sign_in(rt, page_client, "zhou", ["change_manager"])
    done = post_form(page_client, f"/acceptance/{token}", {"decision": "accept"})
    assert done.status_code == 200, done.text
    with Session(rt.engine) as session:
        entry = session.exec(
            select(ChangeEntry).where(
                ChangeEntry.change_id == change_id, ChangeEntry.kind == "accepted"
            )
        ).one()
    assert entry.actor == "zhou" and entry.data["on_behalf"] is True
    assert "on behalf of li" in entry.message


def test_a_forged_or_approval_link_opens_nothing(rt, page_client):
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    assert page_client.get(f"/acceptance/{token}x").status_code == 400
    assert page_client.get(f"/approvals/{token}").status_code == 400  # another purpose
    no_csrf = page_client.post(f"/acceptance/{token}", data={"decision": "accept"})
    assert no_csrf.status_code == 403
    assert state(rt, change_id)[0] == "awaiting_signoff"


def test_a_lapsed_window_decides_nothing_by_link_and_closes_as_accepted(rt, page_client):
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    clock.advance(rt.policies.change.acceptance.window + timedelta(minutes=1))
    late = page_client.get(f"/acceptance/{token}")
    assert late.status_code == 409 and "lapsed" in late.text
    with session_scope(rt.engine) as session:
        lapsed = acceptance.lapsed_acceptances(session, clock.now())
        assert [c.id for c in lapsed] == [change_id]
        acceptance.accept_by_lapse(session, lapsed[0])
    status, _, kinds = state(rt, change_id)
    assert status == ChangeStatus.successful and "accepted_by_lapse" in kinds


def test_reopen_makes_a_new_version_to_approve(rt):
    change_id, _ = verified_change(rt, "li")
    with session_scope(rt.engine) as session:
        request = session.exec(
            select(ApprovalRequest).where(ApprovalRequest.change_id == change_id)
        ).one()
        outcome = acceptance.decide_acceptance(
            session=session,
            request=request,
            decision="reject",
            reason="the report is empty",
            decider=acceptance.Decider("li"),
            via="test",
            policies=rt.policies,  # on_reject: reopen, the shipped default
        )
    assert outcome == "reopened"
    status, version, kinds = state(rt, change_id)
    assert (status, version) == ("submitted", 2) and "reopened" in kinds


def test_a_code_mail_that_fails_decides_nothing_and_may_be_asked_again(rt, smtp_server):
    use_change_policy(rt, acceptance=Acceptance(required=True))
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    unreachable = rt.settings.model_copy(update={"smtp_port": free_port()})
    with TestClient(create_app(unreachable, rt.policies)) as browser:
        failed = post_form(browser, f"/acceptance/{token}", {"decision": "accept"})
    assert failed.status_code == 503 and "could not be sent" in failed.text
    with TestClient(create_app(rt.settings, rt.policies)) as browser:
        # The failed code was withdrawn: no resend wait, a new one goes at once.
        again = post_form(browser, f"/acceptance/{token}", {"decision": "accept"})
        assert again.status_code == 200 and 'id="code"' in again.text
        code = wait_for_code(smtp_server, "owner@example.com")
        done = post_form(browser, f"/acceptance/{token}", {"decision": "accept", "code": code})
    assert done.status_code == 200
    assert state(rt, change_id)[0] == "successful"


def test_markup_in_the_change_is_text_on_the_page(rt, page_client):
    hostile = "<script>alert('x')</script>"
    change_id, token = verified_change(rt, "owner", "owner@example.com")
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.title = hostile
        change.review = {**REVIEW, "actions": [{**REVIEW["actions"][0], "name": hostile}]}
        session.add(change)
    shown = page_client.get(f"/acceptance/{token}")
    assert shown.status_code == 200
    assert hostile not in shown.text and "&lt;script&gt;" in shown.text
