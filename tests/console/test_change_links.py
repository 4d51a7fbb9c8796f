"""Every change and problem link in mails and chat opens its page: the links the notifications
are given (change_context, problem_context) are the console's pages, and a signed-in person who
follows them from the rendered mail and chat message lands on the page."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.app import create_app
from itilflow.models import session_scope
from itilflow.notifications import render_message
from itilflow.notifications.change_context import approval_mail, change_context
from itilflow.notifications.problem_context import problem_context
from itilflow.services import changes
from tests.console.support import sign_in
from tests.console.test_change_pages import store_change
from tests.problems.history import NOW, load_history, problem_for, review

LINK = re.compile(r'https?://[^\s"<>]+')


@pytest.fixture
def browser(rt):
    with TestClient(create_app(rt.settings, rt.policies), follow_redirects=False) as client:
        yield client


def links_in(*texts: str) -> set[str]:
    return {match.rstrip(".,)") for text in texts for match in LINK.findall(text)}


def test_every_link_of_a_change_mail_and_chat_message_opens_a_page(rt, browser):
    change_id = store_change(rt)
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        request = changes.create_approval_request(
            session=session,
            change=change,
            stage="technical-lead",
            approver="chen",
            policies=rt.policies,
        )
        public_url = rt.settings.public_url
        context = change_context(change, policies=rt.policies, public_url=public_url)
        outcome = render_message(
            "change_outcome", "en", {"change": context, "outcome": "successful", "summary": "ok"}
        )
        asked = approval_mail(
            change,
            request,
            address="chen@example.com",
            key="k",
            actor="test",
            reminder=False,
            secret=rt.secret,
            policies=rt.policies,
            public_url=public_url,
        )["message"]
    assert context["url"] == f"{public_url}/changes/CHG-{change_id:06d}"
    links = links_in(
        outcome.text, outcome.chat_body, asked["text"], asked["chat_body"], asked["html"]
    )
    assert context["url"] in links
    sign_in(rt, browser, "chen", ["approver"])
    for link in links:
        page = browser.get(link.replace(public_url, "").replace("&amp;", "&"))
        assert page.status_code == 200, (link, page.text[:300])
        assert "application/json" not in page.headers["content-type"]
        assert "cp app.bak app.conf" in page.text  # the plan, on the change page and the link's


def test_a_problem_link_opens_the_problem_page(rt, browser):
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    problem = problem_for(rt.engine, "ci", "shop-payment")
    with Session(rt.engine) as session:
        context = problem_context(
            session, problem, policies=rt.policies, public_url=rt.settings.public_url
        )
        message = render_message("problem_opened", "en", {"problem": context, "event": "opened"})
    assert context["url"] == f"{rt.settings.public_url}/problems/{problem.number}"
    assert context["url"] in message.text and context["url"] in message.chat_body
    page = sign_in(rt, browser, "chen", ["agent"]).get(f"/problems/{problem.number}")
    assert page.status_code == 200 and problem.title in page.text
