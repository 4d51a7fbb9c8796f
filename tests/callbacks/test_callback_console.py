"""The callback page (/incidents/INC-.../callbacks) through the real gateway app with real
browser sessions: the form for the level's person, their lead and an admin only; refusals
(another agent, a reporter, no CSRF field, signed out) write nothing."""

from __future__ import annotations

import pytest

from itilflow.models import Incident, list_callbacks, session_scope
from itilflow.services import surveys
from tests.console.conftest import open_incident, set_fields, sign_in
from tests.support.csrf import csrf_of

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def number(api, rt) -> str:
    """liu's incident (applications, led by chen) whose reporter answered 1: level 1 open."""
    number = open_incident(api, title="Slow checkout", priority="P3")
    set_fields(rt, number, assignee="liu", group_name="applications")
    with session_scope(rt.engine) as session:
        incident = session.get(Incident, int(number.removeprefix("INC-")))
        surveys.record_answer(session, incident, score=1, comment="slow", policies=rt.policies)
    return number


def outcomes(rt, number: str) -> list[tuple[str | None, str | None]]:
    with session_scope(rt.engine) as session:
        rows = list_callbacks(session=session, incident_id=int(number.removeprefix("INC-")))
        return [(row.assignee, row.outcome) for row in rows]


def test_the_level_person_records_by_the_form(browser, rt, number):
    page = f"/incidents/{number}/callbacks"
    sign_in(browser, rt, "liu", "agent")
    incident_page = browser.get(f"/incidents/{number}")
    assert f'href="{page}"' in incident_page.text  # the incident page links the callback
    shown = browser.get(page)
    assert shown.status_code == 200 and 'id="record"' in shown.text
    csrf = csrf_of(shown.text)

    unforged = browser.post(page, data={"level": "1", "outcome": "satisfied"})
    assert unforged.status_code == 403
    recorded = browser.post(
        page, data={"level": "1", "outcome": "not_satisfied", "note": HOSTILE, "csrf": csrf}
    )
    assert recorded.status_code == 303 and recorded.headers["location"] == page
    assert HOSTILE not in browser.get(page).text  # the note is shown escaped
    assert outcomes(rt, number) == [("liu", "not_satisfied"), ("chen", None)]
    again = browser.post(page, data={"level": "1", "outcome": "satisfied", "csrf": csrf})
    assert again.status_code == 409 and "already" in again.text

    # Level 2 is chen's: liu sees it, without the form, and may not record it.
    assert 'id="record"' not in browser.get(page).text
    refused = browser.post(page, data={"level": "2", "outcome": "satisfied", "csrf": csrf})
    assert refused.status_code == 403
    assert outcomes(rt, number)[1] == ("chen", None)


def test_another_agent_a_reporter_and_a_stranger_are_refused(browser, rt, number):
    page = f"/incidents/{number}/callbacks"
    assert browser.get(page).status_code == 303  # signed out: to the sign-in page
    sign_in(browser, rt, "wang", "group_lead")  # leads hardware, not applications
    shown = browser.get(page)
    assert shown.status_code == 200 and 'id="record"' not in shown.text
    refused = browser.post(
        page, data={"level": "1", "outcome": "satisfied", "csrf": csrf_of(shown.text)}
    )
    assert refused.status_code == 403
    sign_in(browser, rt, "li", "reporter")
    assert browser.get(page).status_code == 403
    assert outcomes(rt, number) == [("liu", None)]


def test_the_lead_and_an_admin_record_for_the_level(browser, rt, number):
    page = f"/incidents/{number}/callbacks"
    sign_in(browser, rt, "chen", "group_lead")  # leads liu's group
    csrf = csrf_of(browser.get(page).text)
    browser.post(page, data={"level": "1", "outcome": "unreachable", "csrf": csrf})
    sign_in(browser, rt, "zhou", "admin")
    csrf = csrf_of(browser.get(page).text)
    answer = browser.post(page, data={"level": "2", "outcome": "satisfied", "csrf": csrf})
    assert answer.status_code == 303
    assert outcomes(rt, number) == [("liu", "unreachable"), ("chen", "satisfied")]
    shown = browser.get(page).text
    assert "Unreachable" in shown and "Satisfied" in shown and 'id="record"' not in shown
