"""The incident page and its actions through the real gateway app: who may see and do what,
each action confirmed, CSRF-checked and written in the signed-in person's name; refusals change
nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlmodel import Session, select

from itilflow.models import FlowTrigger, get_timeline
from tests.console.conftest import incident, open_incident, set_fields, sign_in
from tests.support.csrf import csrf_of


def timeline(rt: Any, number: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    with Session(rt.engine) as session:
        entries = get_timeline(session=session, incident_id=int(number.removeprefix("INC-")))
        return [(e.kind, e.actor, e.message, dict(e.data)) for e in entries]


def kept_mails(rt: Any, number: str, template: str) -> list[dict[str, Any]]:
    """The plans kept for the runner's delivery about the incident, of that template."""
    with Session(rt.engine) as session:
        triggers = session.exec(
            select(FlowTrigger).where(
                FlowTrigger.incident_id == int(number.removeprefix("INC-")),
                FlowTrigger.kind == "notify",
            )
        ).all()
        plans = [t.data["plan"] for t in triggers]
    return [plan for plan in plans if plan["template"] == template]


def act(browser: Any, number: str, action: str, **fields: str) -> Any:
    """Press the action's button on the page, then Confirm on the confirmation page."""
    page = browser.get(f"/incidents/{number}")
    asked = browser.post(
        f"/incidents/{number}", data={"action": action, "csrf": csrf_of(page.text), **fields}
    )
    assert asked.status_code == 200, asked.text
    assert 'name="confirm" value="yes"' in asked.text
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', asked.text))
    return browser.post(f"/incidents/{number}", data=hidden)


def test_an_agent_works_an_incident_through_its_page(browser, api, rt):
    number = open_incident(api, ci="shop-web-01", description="checkout fails")
    sign_in(browser, rt, "chen", "agent")
    page = browser.get(f"/incidents/{number}")
    assert page.status_code == 200
    assert "Payment module returns 500" in page.text and "shop-web-01" in page.text
    assert 'id="sla"' in page.text and "Response due" in page.text and "left" in page.text
    # An agent's actions; a group lead's are not offered.
    assert 'value="acknowledge"' in page.text and 'value="resolve"' in page.text
    assert 'value="reassign"' not in page.text and 'value="close"' not in page.text

    assert act(browser, number, "acknowledge").status_code == 303
    done = act(browser, number, "comment", note="looking at the logs", visibility="internal")
    assert done.status_code == 303 and done.headers["location"] == f"/incidents/{number}"
    act(browser, number, "comment", note="we are on it", visibility="public")
    act(browser, number, "hold", note="waiting for the vendor")
    assert incident(rt, number).status == "on_hold"
    assert "paused" in browser.get(f"/incidents/{number}/live").text
    act(browser, number, "resume")
    act(browser, number, "resolve", note="restarted the payment service")
    assert incident(rt, number).status == "resolved"
    act(browser, number, "reopen", note="it fails again")
    assert incident(rt, number).status == "acknowledged"

    kinds = [(kind, actor) for kind, actor, _, _ in timeline(rt, number)][1:]
    assert kinds == [
        ("acknowledged", "chen"),
        ("commented", "chen"),
        ("commented", "chen"),
        ("on_hold", "chen"),
        ("resumed", "chen"),
        ("resolved", "chen"),
        ("reopened", "chen"),
    ]
    comments = [data for kind, _, _, data in timeline(rt, number) if kind == "commented"]
    assert comments == [{"visibility": "internal"}, {"visibility": "public"}]
    live = browser.get(f"/incidents/{number}/live").text
    assert "restarted the payment service" in live and "it fails again" in live


def test_a_group_lead_reassigns_changes_priority_and_closes(browser, api, rt):
    number = open_incident(api, priority="P3")
    sign_in(browser, rt, "lin", "group_lead")
    assert act(browser, number, "reassign", assignee="liu", note="").status_code == 303
    row = incident(rt, number)
    assert (row.assignee, row.group_name, row.status) == ("liu", "applications", "assigned")
    # Liu hears of it by mail, kept for delivery with the reassignment.
    [told] = kept_mails(rt, number, "reassigned")
    assert told["emails"] == ["liu@example.com"] and "Lin" in told["message"]["text"]
    act(browser, number, "priority", priority="P1", note="the whole shop is down")
    assert incident(rt, number).priority == "P1"
    act(browser, number, "resolve", note="fixed")
    act(browser, number, "close")
    assert incident(rt, number).status == "closed"
    entries = timeline(rt, number)
    assert ("priority_changed", "lin", "the whole shop is down", {"from": "P3", "to": "P1"}) in (
        entries
    )
    # Closed: nothing more to do on the page.
    assert 'id="actions"' not in browser.get(f"/incidents/{number}").text


def test_an_action_is_done_only_once_confirmed(browser, api, rt):
    number = open_incident(api)
    sign_in(browser, rt, "chen", "agent")
    page = browser.get(f"/incidents/{number}")
    asked = browser.post(
        f"/incidents/{number}", data={"action": "acknowledge", "csrf": csrf_of(page.text)}
    )
    assert "Acknowledge INC-" in asked.text
    assert incident(rt, number).status == "new" and len(timeline(rt, number)) == 1


def test_a_refused_transition_says_why_and_changes_nothing(browser, api, rt):
    number = open_incident(api)
    sign_in(browser, rt, "chen", "agent")
    refused = act(browser, number, "resolve", note="")
    assert refused.status_code == 409 and "needs a resolution note" in refused.text
    assert incident(rt, number).status == "new" and len(timeline(rt, number)) == 1


@pytest.mark.parametrize(
    ("action", "fields"),
    [
        ("reassign", {"assignee": "liu"}),
        ("priority", {"priority": "P4", "note": "minor"}),
        ("close", {}),
        ("delete", {}),
    ],
)
def test_an_agent_may_not_do_a_group_leads_actions(browser, api, rt, action, fields):
    number = open_incident(api)
    set_fields(rt, number, status="resolved")
    sign_in(browser, rt, "chen", "agent")
    page = browser.get(f"/incidents/{number}")
    data = {"action": action, "csrf": csrf_of(page.text), "confirm": "yes", **fields}
    refused = browser.post(f"/incidents/{number}", data=data)
    assert refused.status_code == 403 and "Not allowed" in refused.text
    row = incident(rt, number)
    assert (row.status, row.assignee, row.priority) == ("resolved", None, "P1")
    assert len(timeline(rt, number)) == 1


def test_a_person_without_a_role_gets_403(browser, api, rt):
    number = open_incident(api)
    sign_in(browser, rt, "zhou")  # in the directory, no role at all
    for path in (f"/incidents/{number}", "/incidents"):
        answer = browser.get(path)
        assert answer.status_code == 403 and "Payment module" not in answer.text
    assert browser.get(f"/incidents/{number}/live").status_code == 403
    page = browser.get("/incidents")
    data = {"action": "acknowledge", "csrf": csrf_of(page.text), "confirm": "yes"}
    assert browser.post(f"/incidents/{number}", data=data).status_code == 403
    assert incident(rt, number).status == "new"


@pytest.mark.parametrize("csrf", ["missing", "wrong", "another browser's"])
def test_a_form_without_its_csrf_token_is_refused(browser, api, rt, app, csrf):
    from fastapi.testclient import TestClient

    number = open_incident(api)
    sign_in(browser, rt, "chen", "agent")
    browser.get(f"/incidents/{number}")  # the CSRF cookie is set
    data = {"action": "acknowledge", "confirm": "yes", "note": "x"}
    if csrf == "wrong":
        data["csrf"] = "0" * 64
    elif csrf == "another browser's":
        with TestClient(app) as other:
            data["csrf"] = csrf_of(other.get("/signin").text)
    refused = browser.post(f"/incidents/{number}", data=data)
    assert refused.status_code == 403 and "The form has expired" in refused.text
    assert incident(rt, number).status == "new" and len(timeline(rt, number)) == 1


def test_a_signed_out_visitor_sees_only_the_sign_in_page(browser, api, rt):
    number = open_incident(api, title="Secret outage at the bank")
    for path in (f"/incidents/{number}", "/incidents?queue=all", "/incidents/INC-999999"):
        answer = browser.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=%2Fincidents")
        assert "Secret outage" not in answer.text
    followed = browser.get(f"/incidents/{number}", follow_redirects=True)
    assert "Sign in" in followed.text and "Secret outage" not in followed.text
    assert browser.get(f"/incidents/{number}/live").status_code == 401
    token = csrf_of(browser.get("/signin").text)
    posted = browser.post(
        f"/incidents/{number}", data={"action": "acknowledge", "confirm": "yes", "csrf": token}
    )
    assert posted.status_code == 303 and posted.headers["location"].startswith("/signin")
    assert incident(rt, number).status == "new"


def test_the_page_follows_the_persons_language(browser, api, rt):
    number = open_incident(api)
    sign_in(browser, rt, "chen", "agent")
    english = browser.get(f"/incidents/{number}", headers={"Accept-Language": "en-GB"})
    assert "Acknowledge" in english.text and '<html lang="en">' in english.text
    chinese = browser.get(f"/incidents/{number}", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "确认" in chinese.text and '<html lang="zh-CN">' in chinese.text
    from itilflow.models import Engineer, session_scope

    with session_scope(rt.engine) as session:
        engineer = session.get(Engineer, "chen")
        engineer.language = "zh_CN"
        session.add(engineer)
    # The directory's language wins over the browser's.
    assert "确认" in browser.get(f"/incidents/{number}", headers={"Accept-Language": "en"}).text
