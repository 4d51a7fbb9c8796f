"""The console's comment "to the reporter" is mailed to the reporter (kept for the runner's
delivery in the comment's transaction); an internal note and the reporter's own reply are not."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from itilflow.models import FlowTrigger
from tests.console.conftest import open_incident, sign_in
from tests.console.test_incident_pages import act


def kept_plans(rt: Any, number: str) -> list[dict[str, Any]]:
    with Session(rt.engine) as session:
        triggers = session.exec(
            select(FlowTrigger).where(FlowTrigger.incident_id == int(number[4:]))
        )
        return [t.data["plan"] for t in triggers if t.kind == "notify"]


def test_a_comment_to_the_reporter_is_mailed_an_internal_one_is_not(browser, api, rt):
    number = open_incident(api, reporter_email="ada@customer.example")
    sign_in(browser, rt, "chen", "agent")
    act(browser, number, "comment", note="only for us", visibility="internal")
    assert kept_plans(rt, number) == []
    act(browser, number, "comment", note="A technician comes at 14:00.", visibility="public")
    [plan] = kept_plans(rt, number)
    assert plan["emails"] == ["ada@customer.example"]
    assert "A technician comes at 14:00." in plan["message"]["text"]
    assert plan["actor"] == "chen"


def test_the_reporters_own_reply_is_not_mailed_back(browser, api, rt):
    number = open_incident(api, reporter_email="chen@example.com")
    sign_in(browser, rt, "chen", "reporter")
    assert act(browser, number, "reply", note="still broken").status_code == 303
    assert kept_plans(rt, number) == []
