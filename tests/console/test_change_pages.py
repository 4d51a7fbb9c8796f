"""The change page (/changes/CHG-...) and the plan on the approval page: the whole plan with each
step's undo, risk, stages and decisions, timeline and step outputs; who may see it; hostile
values escaped; a signed-out visitor sent to the sign-in page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from itilflow.gateway.app import create_app
from itilflow.models import (
    ChangeStatus,
    add_change_entry,
    list_approval_requests,
    session_scope,
)
from itilflow.services import changes
from tests.console.support import HOSTILE, assert_escaped, sign_in
from tests.support.approval_codes import wait_for_code
from tests.support.csrf import csrf_of

PLAN = {
    "backup": [{"name": "save config", "do": {"kind": "shell", "command": "cp app.conf app.bak"}}],
    "steps": [
        {
            "name": "bump version",
            "do": {
                "kind": "shell",
                "command": "sed -i s/version=1/version=2/ app.conf",
                "env": {"DEPLOY_TOKEN": "s3cr3t-value"},
            },
            "undo": {"kind": "shell", "command": "cp app.bak app.conf"},
        },
        {
            "name": "tell the load balancer",
            "do": {
                "kind": "http",
                "method": "POST",
                "url": "https://ops:pa55word@lb.example.com/pools/shop",
                "headers": {"Authorization": "Bearer lb-token-123", "X-Reason": "upgrade"},
                "json": {"drain": True},
            },
            "irreversible": True,
        },
    ],
    "verify": [
        {"name": "health", "do": {"kind": "http", "url": "https://shop.example.com/health"}}
    ],
    "rollback_verify": [
        {"name": "old version", "do": {"kind": "shell", "argv": ["grep", "version=1", "app.conf"]}}
    ],
}


def store_change(rt, *, title="Upgrade the shop", plan=PLAN, requester="liu") -> int:
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(
                title=title, plan=plan, requester=requester, ci_names=["shop-payment"]
            ),
            actor=requester,
        )
        change.status = ChangeStatus.awaiting_approval
        change.risk_level, change.risk_score = "high", 7.5
        change.risk_reasons = ["touches a critical CI", "an irreversible step"]
        session.flush()
        assert change.id is not None
        return change.id


def ask(rt, change_id: int, approver: str, stage: str = "technical-lead") -> str:
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        request = changes.create_approval_request(
            session=session, change=change, stage=stage, approver=approver, policies=rt.policies
        )
        return changes.approval_token(request, secret=rt.secret, policies=rt.policies)


@pytest.fixture
def browser(rt):
    with TestClient(create_app(rt.settings, rt.policies), follow_redirects=False) as client:
        yield client


def test_the_change_page_shows_the_whole_plan_risk_stages_timeline_and_outputs(rt, browser):
    change_id = store_change(rt)
    ask(rt, change_id, "chen")
    with session_scope(rt.engine) as session:
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="backup_ok",
            actor="flow:implement-change",
            message="backup save config: exit 0",
            data={"phase": "backup", "name": "save config", "output": "copied [redacted]\n"},
        )
    page = sign_in(rt, browser, "wang", ["agent"]).get(f"/changes/CHG-{change_id:06d}")
    assert page.status_code == 200, page.text
    html = page.text
    for shown in (
        "cp app.conf app.bak",  # backup
        "sed -i s/version=1/version=2/ app.conf",  # a step
        "cp app.bak app.conf",  # its undo
        "POST https://lb.example.com/pools/shop",  # a request, without its user:password
        "&#34;drain&#34;: true",  # its body
        "irreversible",
        "https://shop.example.com/health",  # a check
        "grep version=1 app.conf",  # a rollback check (argv)
        "touches a critical CI",  # a risk reason
        "technical-lead",
        "chen",
        "copied [redacted]",  # a step's output as stored
        "<code>submitted</code>",  # the timeline
        "DEPLOY_TOKEN",  # an environment variable's name
        "X-Reason: upgrade",
    ):
        assert shown in html, shown
    for secret in ("s3cr3t-value", "pa55word", "lb-token-123"):
        assert secret not in html, secret
    assert page.headers["cache-control"] == "no-store"


def test_the_page_is_in_the_persons_language(rt, browser):
    from itilflow.models import Engineer

    change_id = store_change(rt)
    with session_scope(rt.engine) as session:
        engineer = session.get(Engineer, "wang")
        engineer.language = "zh_CN"
        session.add(engineer)
    html = sign_in(rt, browser, "wang", ["agent"]).get(f"/changes/{change_id}").text
    assert "步骤及其回退" in html and "Steps, each with its undo" not in html


def test_hostile_titles_commands_and_outputs_are_escaped(rt, browser):
    plan = {
        "steps": [
            {
                "name": HOSTILE,
                "do": {"kind": "shell", "command": f"echo '{HOSTILE}'"},
                "undo": {"kind": "shell", "command": f"echo {HOSTILE}"},
            }
        ]
    }
    change_id = store_change(rt, title=HOSTILE, plan=plan)
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.risk_reasons = [HOSTILE]
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="step_failed",
            actor=HOSTILE,
            message=HOSTILE,
            data={"output": HOSTILE},
        )
    page = sign_in(rt, browser, "wang", ["change_manager"]).get(f"/changes/{change_id}")
    assert page.status_code == 200
    assert_escaped(page.text)
    browser.cookies.clear()  # the approval link, opened by its approver signed out
    approval = browser.get(f"/approvals/{ask(rt, change_id, 'chen')}")
    assert approval.status_code == 200
    assert_escaped(approval.text)


@pytest.mark.parametrize(
    ("who", "roles", "allowed"),
    [
        ("wang", ["agent"], True),
        ("wang", ["approver"], True),
        ("wang", ["change_manager"], True),
        ("wang", ["admin"], True),
        ("liu", [], True),  # the requester
        ("sun", [], True),  # asked to approve it
        ("wang", ["reporter"], False),
        ("wang", [], False),
    ],
)
def test_who_may_see_a_change(rt, browser, who, roles, allowed):
    change_id = store_change(rt, requester="liu")
    ask(rt, change_id, "sun")
    page = sign_in(rt, browser, who, roles).get(f"/changes/{change_id}")
    if allowed:
        assert page.status_code == 200 and "sed -i" in page.text
    else:
        assert page.status_code == 403
        assert "sed -i" not in page.text and "Upgrade the shop" not in page.text


def test_a_signed_out_visitor_is_sent_to_the_sign_in_page(rt, browser):
    change_id = store_change(rt)
    page = browser.get(f"/changes/CHG-{change_id:06d}")
    assert page.status_code == 303
    assert page.headers["location"] == f"/signin?next=%2Fchanges%2FCHG-{change_id:06d}"
    assert "sed -i" not in page.text
    followed = browser.get(page.headers["location"])
    assert followed.status_code == 200 and 'id="name"' in followed.text
    assert "Upgrade the shop" not in followed.text


def test_a_revoked_or_forged_session_sees_only_the_sign_in_page(rt, browser):
    change_id = store_change(rt)
    browser.cookies.set("itilflow_session", "forged-session-value-that-is-long-enough")
    assert browser.get(f"/changes/{change_id}").status_code == 303


def test_an_unknown_change_is_not_found(rt, browser):
    sign_in(rt, browser, "wang", ["agent"])
    assert browser.get("/changes/CHG-999999").status_code == 404
    assert browser.get("/changes/<script>").status_code == 404
    assert_escaped(browser.get("/changes/%3Cscript%3E").text, "<script>")


def read(rt, token: str) -> tuple[int, str]:
    with session_scope(rt.engine) as session:
        request, _ = changes.read_token(session, token, secret=rt.secret)
        return request.id, request.approver


def test_the_approver_sees_a_link_to_decide_and_no_one_else_does(rt, browser):
    change_id = store_change(rt)
    token = ask(rt, change_id, "chen")
    mine = sign_in(rt, browser, "chen", []).get(f"/changes/{change_id}")
    # The page signs its own link (its expiry counts from now): the same request as the mail's.
    shown = re.findall(r'href="/approvals/([^"]+)"', mine.text)
    assert [read(rt, link) for link in shown] == [read(rt, token)]
    with TestClient(create_app(rt.settings, rt.policies)) as other:
        theirs = sign_in(rt, other, "wang", ["change_manager"]).get(f"/changes/{change_id}")
    assert "/approvals/" not in theirs.text


def test_the_approval_page_shows_the_plan_before_any_code_is_asked(rt, browser, smtp_server):
    change_id = store_change(rt)
    token = ask(rt, change_id, "chen")
    page = browser.get(f"/approvals/{token}?decision=approve")  # signed out: the link suffices
    assert page.status_code == 200
    for shown in ("sed -i s/version=1/version=2/ app.conf", "cp app.bak app.conf", "health"):
        assert shown in page.text
    assert "s3cr3t-value" not in page.text and "lb-token-123" not in page.text
    assert not smtp_server.mails  # showing the plan mails nothing


def test_the_approval_form_without_its_csrf_token_decides_nothing(rt, browser, smtp_server):
    change_id = store_change(rt)
    token = ask(rt, change_id, "chen")
    opened = browser.get(f"/approvals/{token}")
    assert csrf_of(opened.text)
    for form in ({"decision": "approve"}, {"decision": "approve", "csrf": "0" * 64}):
        refused = browser.post(f"/approvals/{token}", data=form)
        assert refused.status_code == 403
        assert "not sent from this link" in refused.text
    assert not smtp_server.mails  # no code was mailed
    with session_scope(rt.engine) as session:
        assert changes.load_change(session, change_id).status == ChangeStatus.awaiting_approval
        [request] = list_approval_requests(session=session, change_id=change_id)
        assert request.decision is None and request.decided_at is None


def test_an_approver_decides_from_the_change_page_with_the_mailed_code(rt, browser, smtp_server):
    change_id = store_change(rt)
    ask(rt, change_id, "chen")
    page = sign_in(rt, browser, "chen", []).get(f"/changes/{change_id}")
    [link] = re.findall(r'href="(/approvals/[^"]+)"', page.text)
    opened = browser.get(link)
    assert opened.status_code == 200 and "cp app.bak app.conf" in opened.text
    pressed = browser.post(link, data={"decision": "approve", "csrf": csrf_of(opened.text)})
    assert pressed.status_code == 200 and 'id="code"' in pressed.text
    code = wait_for_code(smtp_server, "chen@example.com")
    decided = browser.post(
        link, data={"decision": "approve", "code": code, "csrf": csrf_of(pressed.text)}
    )
    assert decided.status_code == 200 and "recorded" in decided.text
    after = browser.get(f"/changes/{change_id}").text
    assert "/approvals/" not in after  # the used link is offered no more
    assert 'class="decision-approve"' in after


def test_a_change_without_a_plan_or_with_an_unreadable_one_says_so(rt, browser):
    from itilflow.models import Change

    with session_scope(rt.engine) as session:
        bare = Change(title="Fix the payment pool", requester="liu")
        odd = Change(title="Old plan", requester="liu", plan={"steps": [{"name": "x"}]})
        session.add_all([bare, odd])
        session.flush()
        ids = bare.id, odd.id
    sign_in(rt, browser, "wang", ["agent"])
    assert "No plan was stored with this change." in browser.get(f"/changes/{ids[0]}").text
    unreadable = browser.get(f"/changes/{ids[1]}")
    assert unreadable.status_code == 200 and 'id="plan-unreadable"' in unreadable.text
