"""The incident page (/incidents/INC-000042), its live part, and its actions.

Agents (and the roles above them) see the whole incident and act on it by role; a person who
only reported it sees its status and public comments and may reply; anyone else gets the same
"not found" as for a number that does not exist. Every action is a POST carrying the CSRF field,
is confirmed (a first POST without `confirm=yes` answers the confirmation page), and is done in
the signed-in person's name.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, select

from itilflow.gateway import browser
from itilflow.gateway.assignee_mail import keep_reassignment_for_assignee
from itilflow.gateway.console import incident_view as views
from itilflow.gateway.console.base import (
    forbidden,
    form_value,
    language,
    render,
    signed_in_with,
)
from itilflow.gateway.console.catalogue import translator
from itilflow.gateway.deps import Gateway, gateway_of
from itilflow.gateway.html import render_page
from itilflow.gateway.reporter_mail import keep_comment_for_reporter
from itilflow.models import Engineer, Incident, parse_incident_ref
from itilflow.services import incident_edits, incidents
from itilflow.services.incident_actions import comment
from itilflow.services.principals import Principal
from itilflow.services.surveys import survey_token

log = logging.getLogger("itilflow.gateway.console")

router = APIRouter(tags=["console"], include_in_schema=False)

# How often the page asks for its live part, in milliseconds.
POLL_EVERY_MS = 4000


def _load(session: Session, ref: str) -> Incident | None:
    try:
        return incidents.load_incident(session, parse_incident_ref(ref))
    except (ValueError, incidents.NotFound):
        return None


def _not_found(request: Request, person: Principal, lang: str) -> HTMLResponse:
    return render(request, person, "not_found.html", status_code=404, lang=lang)


def _audience(session: Session, person: Principal, incident: Incident) -> str | None:
    """The page's audience: "worker", "reporter", or None (may not see the incident)."""
    if views.may_work(person):
        return "worker"
    if views.is_reporter(session, person, incident):
        return "reporter"
    return None


def _page(
    request: Request,
    person: Principal,
    session: Session,
    incident: Incident,
    audience: str,
    *,
    lang: str,
    error: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    policies = gateway_of(request).policies
    view = views.view_of(session, incident, policies, reporter=audience == "reporter")
    actions = views.actions_for(person, incident) if audience == "worker" else []
    return render(
        request,
        person,
        "incident.html",
        status_code=status_code,
        lang=lang,
        view=view,
        actions=actions,
        may_reply=audience == "reporter" and incident.status in views.REPLY_STATUSES,
        people=_people(session) if "reassign" in actions else [],
        survey_url=_survey_url(request, incident) if audience == "reporter" else None,
        poll_every=POLL_EVERY_MS,
        error=error,
    )


def _people(session: Session) -> list[Engineer]:
    rows = session.exec(
        select(Engineer).where(col(Engineer.active).is_(True)).order_by(col(Engineer.username))
    )
    return list(rows)


def _survey_url(request: Request, incident: Incident) -> str | None:
    """The survey of a resolved incident (the same signed link the reporter is mailed)."""
    if incident.status.value not in ("resolved", "closed") or incident.survey_score is not None:
        return None
    assert incident.id is not None
    return f"/surveys/{survey_token(incident.id, secret=gateway_of(request).secret)}"


@router.get("/incidents/{ref}", response_class=HTMLResponse)
def incident_page(ref: str, request: Request) -> Response:
    person = signed_in_with(request, "reporter")
    if isinstance(person, Response):
        return person
    lang = language(request, person)  # before the session below: SQLite has one writer
    with Session(gateway_of(request).engine) as session:
        incident = _load(session, ref)
        audience = _audience(session, person, incident) if incident else None
        if incident is None or audience is None:
            return _not_found(request, person, lang)
        return _page(request, person, session, incident, audience, lang=lang)


@router.get("/incidents/{ref}/live", response_class=HTMLResponse)
def incident_live(ref: str, request: Request) -> Response:
    """The page's live part (status, SLA clocks, timeline) for its script to swap in."""
    person = browser.current_person(request)
    if person is None:
        return HTMLResponse("", status_code=401)
    if not person.has("reporter"):
        return HTMLResponse("", status_code=403)
    lang = language(request, person)
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        incident = _load(session, ref)
        audience = _audience(session, person, incident) if incident else None
        if incident is None or audience is None:
            return HTMLResponse("", status_code=404)
        view = views.view_of(session, incident, gateway.policies, reporter=audience == "reporter")
        response = render_page(
            "incident_live.html", view=view, t=translator(lang), lang=lang, person=person
        )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/incidents/{ref}", response_class=HTMLResponse)
def act(ref: str, request: Request, form: browser.PageForm) -> Response:
    """One action from the page: checked (session, CSRF, role, state), confirmed, then done."""
    person = signed_in_with(request, "reporter")
    if isinstance(person, Response):
        return person  # signed out: to sign in, then back to the incident's page
    lang = language(request, person)  # before the session below: SQLite has one writer
    if not browser.csrf_ok(request, form):
        browser.log_csrf_refusal(request, f"incident {ref}")
        return render(request, person, "expired.html", status_code=403, lang=lang)
    action = form_value(form, "action", 40)
    gateway = gateway_of(request)
    with Session(gateway.engine, expire_on_commit=False) as session:
        incident = _load(session, ref)
        audience = _audience(session, person, incident) if incident else None
        if incident is None or audience is None:
            return _not_found(request, person, lang)
        if not _may(person, audience, action):
            log.warning("%s may not %s %s: refused", person.name, action, incident.number)
            return forbidden(request, person, lang)
        if form_value(form, "confirm", 10) != "yes":
            return render(
                request,
                person,
                "incident_confirm.html",
                lang=lang,
                incident=incident,
                action=action,
                fields={name: form_value(form, name) for name in FIELDS},
            )
        try:
            _apply(session, incident, action, form, person, gateway)
            session.commit()
        except incidents.ActionError as exc:
            session.rollback()
            incident = _load(session, ref)
            assert incident is not None
            return _page(
                request,
                person,
                session,
                incident,
                audience,
                lang=lang,
                error=str(exc),
                status_code=409,
            )
        log.info("%s: %s by %s (console)", incident.number, action, person.name)
        return RedirectResponse(f"/incidents/{incident.number}", status_code=303)


# The form fields an action may carry besides `action`, `confirm` and `csrf`.
FIELDS = ("note", "visibility", "assignee", "priority")


def _may(person: Principal, audience: str, action: str) -> bool:
    if audience == "reporter":
        return action == views.REPLY
    rule = views.ACTION_RULES.get(action)
    return rule is not None and person.has(rule[0])


# The console's own edits: the function and the one form field it takes besides the note.
EDITS = {
    "reassign": (incident_edits.reassign, "assignee"),
    "priority": (incident_edits.change_priority, "priority"),
}


def _apply(
    session: Session,
    incident: Incident,
    action: str,
    form: dict[str, list[str]],
    person: Principal,
    gateway: Gateway,
) -> None:
    policies = gateway.policies
    note = form_value(form, "note")
    actor = person.name
    if action == views.REPLY:
        if incident.status not in views.REPLY_STATUSES:
            raise incidents.ActionError(f"{incident.number} is closed: open a new incident")
        visibility = "public"
    elif action == "comment":
        visibility = "public" if form_value(form, "visibility", 20) == "public" else "internal"
    elif action in EDITS:
        edit, field = EDITS[action]
        value = form_value(form, field, 64)
        edit(session, incident, **{field: value}, actor=actor, note=note, policies=policies)
        if action == "reassign":
            keep_reassignment_for_assignee(
                session, incident, actor=actor, note=note, gateway=gateway
            )
        return
    else:
        assert incident.id is not None
        incidents.apply_action(
            session, incident.id, action, actor=actor, note=note, policies=policies
        )
        return
    comment(session, incident, actor=actor, note=note, policies=policies, visibility=visibility)
    if action == "comment" and visibility == "public":
        keep_comment_for_reporter(session, incident, note=note, author=actor, gateway=gateway)
