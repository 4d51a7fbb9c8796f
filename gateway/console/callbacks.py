"""An incident's survey callback page (/incidents/INC-000042/callbacks): its levels, and the form
that records the open level's outcome.

Agents (and the roles above them) see the levels; the form is shown to, and its POST accepted
from, only the open level's person, a lead of one of their groups or an admin
(services/callbacks.py `may_record`, as the API). The POST carries the CSRF field and records in
the signed-in person's name; a refused one writes nothing and answers 403. The mail each level's
person gets links here.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from itilflow.gateway import browser
from itilflow.gateway.console.base import form_value, language, render, signed_in_with
from itilflow.gateway.console.catalogue import texts
from itilflow.gateway.console.page_parts import message_page, when_in
from itilflow.gateway.deps import gateway_of
from itilflow.models import Incident, SurveyCallback, list_callbacks, parse_incident_ref
from itilflow.policies import OUTCOMES
from itilflow.services import callbacks, incidents
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.console")

router = APIRouter(tags=["console"], include_in_schema=False)


def _load(session: Session, ref: str) -> Incident | None:
    try:
        return incidents.load_incident(session, parse_incident_ref(ref))
    except (ValueError, incidents.NotFound):
        return None


def _show(
    request: Request,
    person: Principal,
    lang: str,
    session: Session,
    incident: Incident,
    *,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    assert incident.id is not None
    rows = list_callbacks(session=session, incident_id=incident.id)
    open_level = next((row for row in rows if row.is_open), None)
    may_record = open_level is not None and callbacks.may_record(session, person, open_level)
    zone = gateway_of(request).policies.report.zone
    return render(
        request,
        person,
        "callbacks.html",
        status_code=status_code,
        lang=lang,
        t=texts("callbacks", lang),
        when=when_in(zone),
        incident=incident,
        levels=rows,
        form_level=open_level if may_record else None,
        outcomes=OUTCOMES,
        error=error,
    )


def _page_or_refusal(request: Request, ref: str) -> tuple[Principal, str] | Response:
    person = signed_in_with(request, "agent")
    if isinstance(person, Response):
        return person
    return person, language(request, person)  # before any session: SQLite has one writer


@router.get("/incidents/{ref}/callbacks", response_class=HTMLResponse)
def callbacks_page(ref: str, request: Request) -> Response:
    found = _page_or_refusal(request, ref)
    if isinstance(found, Response):
        return found
    person, lang = found
    with Session(gateway_of(request).engine) as session:
        incident = _load(session, ref)
        if incident is None:
            return _not_found(request, person, lang, ref)
        return _show(request, person, lang, session, incident)


@router.post("/incidents/{ref}/callbacks", response_class=HTMLResponse)
def record(ref: str, request: Request, form: browser.PageForm) -> Response:
    found = _page_or_refusal(request, ref)
    if isinstance(found, Response):
        return found
    person, lang = found
    if not browser.csrf_ok(request, form):
        browser.log_csrf_refusal(request, f"callback of incident {ref}")
        return render(request, person, "expired.html", status_code=403, lang=lang)
    gateway = gateway_of(request)
    with Session(gateway.engine, expire_on_commit=False) as session:
        incident = _load(session, ref)
        if incident is None:
            return _not_found(request, person, lang, ref)
        row = _level(session, incident, form_value(form, "level", 4))
        if row is None or not callbacks.may_record(session, person, row):
            log.warning("%s may not record the callback of %s: refused", person.name, ref)
            return _refused(request, person, lang)
        try:
            callbacks.record_outcome(
                session,
                incident,
                row.level,
                outcome=form_value(form, "outcome", 20),
                note=form_value(form, "note", 4000),
                actor=person.name,
                policies=gateway.policies,
            )
            session.commit()
        except callbacks.CallbackRefused as exc:
            session.rollback()
            return _show(request, person, lang, session, incident, error=str(exc), status_code=409)
    log.info("%s: callback level %d recorded by %s (console)", ref, row.level, person.name)
    return RedirectResponse(f"/incidents/{incident.number}/callbacks", status_code=303)


def _level(session: Session, incident: Incident, level: str) -> SurveyCallback | None:
    if not level.isdigit():
        return None
    assert incident.id is not None
    rows = list_callbacks(session=session, incident_id=incident.id)
    return next((row for row in rows if row.level == int(level)), None)


def _not_found(request: Request, person: Principal, lang: str, ref: str) -> HTMLResponse:
    t = texts("callbacks", lang)
    page: Any = (request, person, lang)
    return message_page(page, t, t["not_found_title"], t["not_found"].format(ref=ref), 404)


def _refused(request: Request, person: Principal, lang: str) -> HTMLResponse:
    t = texts("callbacks", lang)
    page: Any = (request, person, lang)
    return message_page(page, t, t["forbidden_title"], t["forbidden"], 403)
