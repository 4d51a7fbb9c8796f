"""The problem page (/problems/PRB-...) and the knowledge pages (/knowledge, /knowledge/KB-...):
what they show, who may see them, hostile values escaped, a signed-out visitor sent to sign in."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from itilflow import clock
from itilflow.gateway.app import create_app
from itilflow.models import Incident, KnowledgeArticle, Problem, ProblemIncident, session_scope
from tests.console.support import HOSTILE, assert_escaped, sign_in
from tests.problems.history import (
    NOW,
    WORKAROUND,
    load_history,
    make_known_error,
    problem_for,
    review,
)


@pytest.fixture
def browser(rt):
    with TestClient(create_app(rt.settings, rt.policies), follow_redirects=False) as client:
        yield client


@pytest.fixture
def known_error(rt) -> Problem:
    """The payment problem of the history, analysed and made a known error with its article."""
    load_history(rt.engine)
    clock.freeze(NOW)
    review(rt.engine, rt.policies)
    problem = problem_for(rt.engine, "ci", "shop-payment")
    assert problem.id is not None
    make_known_error(rt.engine, rt.policies, problem.id, keywords=["payment"])
    return problem


def article_of(rt, problem_id: int) -> KnowledgeArticle:
    with session_scope(rt.engine) as session:
        return session.exec(
            select(KnowledgeArticle).where(KnowledgeArticle.problem_id == problem_id)
        ).one()


def test_the_problem_page_shows_status_incidents_root_cause_and_known_error(
    rt, browser, known_error
):
    number = known_error.number
    page = sign_in(rt, browser, "wang", ["reporter"]).get(f"/problems/{number}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "known_error" in html and "Connection pool too small" in html
    assert "Its database connection pool was exhausted." in html  # the five whys
    assert WORKAROUND in html
    with session_scope(rt.engine) as session:
        linked = session.exec(
            select(Incident.id)
            .join(ProblemIncident)
            .where(ProblemIncident.problem_id == known_error.id)
        ).all()
    for incident_id in linked:
        assert f'href="/incidents/INC-{incident_id:06d}"' in html
    article = article_of(rt, known_error.id)
    assert f'href="/knowledge/{article.number}"' in html


def test_knowledge_search_and_article(rt, browser, known_error):
    sign_in(rt, browser, "wang", ["reporter"])
    article = article_of(rt, known_error.id)
    found = browser.get("/knowledge", params={"q": "PAYMENT"})
    assert found.status_code == 200
    assert f'href="/knowledge/{article.number}"' in found.text
    assert "1 articles found." in found.text
    nothing = browser.get("/knowledge", params={"q": "printer toner"})
    assert "No article matches." in nothing.text and article.number not in nothing.text
    page = browser.get(f"/knowledge/{article.number}")
    assert page.status_code == 200
    assert WORKAROUND in page.text and f'href="/problems/{known_error.number}"' in page.text
    assert browser.get("/knowledge/KB-999999").status_code == 404
    assert browser.get("/knowledge/nonsense").status_code == 404
    assert browser.get("/problems/PRB-999999").status_code == 404


def test_hostile_problem_and_article_text_is_escaped(rt, browser, known_error):
    with session_scope(rt.engine) as session:
        problem = session.get(Problem, known_error.id)
        problem.title = problem.workaround = problem.root_cause = HOSTILE
        session.add(problem)
        article = session.exec(
            select(KnowledgeArticle).where(KnowledgeArticle.problem_id == known_error.id)
        ).one()
        article.title = article.workaround = article.symptoms = HOSTILE
        session.add(article)
        number = article.number
    sign_in(rt, browser, "wang", ["agent"])
    for path in (f"/problems/{known_error.number}", "/knowledge", f"/knowledge/{number}"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert_escaped(page.text)
    searched = browser.get("/knowledge", params={"q": HOSTILE})
    assert_escaped(searched.text)


@pytest.mark.parametrize("path", ["/problems/PRB-000001", "/knowledge", "/knowledge/KB-000001"])
def test_signed_out_visitors_are_sent_to_sign_in_and_people_without_a_role_refused(
    rt, browser, known_error, path
):
    signed_out = browser.get(path)
    assert signed_out.status_code == 303
    assert signed_out.headers["location"].startswith("/signin?next=")
    assert WORKAROUND not in signed_out.text
    refused = sign_in(rt, browser, "wang", []).get(path)
    assert refused.status_code == 403 and WORKAROUND not in refused.text
