"""The problem page (/problems/PRB-000042: status, linked incidents, root cause, known error) and
the knowledge pages (/knowledge: search the known errors' workarounds; /knowledge/KB-000042: one
article).

Who may see them: any signed-in person with a role (reporter, the least one, is implied by every
other), as the API's reads; a browser signed in as nobody is sent to the sign-in page. The data
is the API's own (gateway/problems.py `detail`, services.problems' search), so the page and the
JSON never disagree. The routes are plain `def`s, run in FastAPI's thread pool.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from itilflow.gateway.console.base import language_of, person_or_signin, render
from itilflow.gateway.console.catalogue import texts
from itilflow.gateway.console.page_parts import message_page, when_in
from itilflow.gateway.deps import gateway_of
from itilflow.gateway.problems import article_out, detail
from itilflow.models import KnowledgeArticle, parse_article_ref, parse_problem_ref
from itilflow.services import problems
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.console")

router = APIRouter(tags=["console"])

READER = "reporter"
SEARCH_RESULTS = 50


def _reader_or_refusal(
    request: Request,
) -> tuple[tuple[Request, Principal, str], dict[str, str]] | Response:
    """The signed-in person holding a role with the texts in their language, or the page that
    answers instead: the sign-in redirect, or 403 for a person without any role."""
    person = person_or_signin(request)
    if isinstance(person, RedirectResponse):
        return person
    lang = language_of(request, person.name)
    t = texts("problems", lang)
    page = (request, person, lang)
    if not person.has(READER):
        log.warning("refused %s %s: no role", person.name, request.url.path)
        return message_page(page, t, t["forbidden_title"], t["forbidden"], 403)
    return page, t


def _show(
    page: tuple[Request, Principal, str], t: dict[str, str], template: str, **values: Any
) -> HTMLResponse:
    """`template` in the console's layout for the page's person, times in the problem zone."""
    request, person, lang = page
    zone = gateway_of(request).policies.problem.zone
    return render(request, person, template, lang=lang, t=t, when=when_in(zone), **values)


@router.get("/problems/{ref}", response_class=HTMLResponse, include_in_schema=False)
def problem_page(ref: str, request: Request) -> Response:
    reader = _reader_or_refusal(request)
    if isinstance(reader, Response):
        return reader
    page, t = reader
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        try:
            problem = problems.load_problem(session, parse_problem_ref(ref))
        except (ValueError, problems.NotFound):
            return message_page(
                page, t, t["not_found_title"], t["problem_not_found"].format(ref=ref), 404
            )
        shown = detail(session, problem, gateway.settings.public_url or "")
    return _show(page, t, "problem.html", title=f"{shown.number} {shown.title}", problem=shown)


@router.get("/knowledge", response_class=HTMLResponse, include_in_schema=False)
def knowledge_page(request: Request, q: Annotated[str, Query(max_length=200)] = "") -> Response:
    reader = _reader_or_refusal(request)
    if isinstance(reader, Response):
        return reader
    page, t = reader
    with Session(gateway_of(request).engine) as session:
        found = [
            article_out(article, score)
            for article, score in problems.search_articles(session, q, limit=SEARCH_RESULTS)
        ]
    return _show(page, t, "knowledge.html", title=t["knowledge"], q=q, articles=found)


@router.get("/knowledge/{ref}", response_class=HTMLResponse, include_in_schema=False)
def article_page(ref: str, request: Request) -> Response:
    reader = _reader_or_refusal(request)
    if isinstance(reader, Response):
        return reader
    page, t = reader
    with Session(gateway_of(request).engine) as session:
        try:
            article = session.get(KnowledgeArticle, parse_article_ref(ref))
        except ValueError:
            article = None
        if article is None:
            return message_page(
                page, t, t["not_found_title"], t["article_not_found"].format(ref=ref), 404
            )
        shown = article_out(article)
    return _show(page, t, "article.html", title=f"{shown.number} {shown.title}", article=shown)
