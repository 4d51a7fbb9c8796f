"""The proactive notice pages: /proactive (the notices, newest first) and /proactive/PRO-000007
(the prediction, the proposed window and template, the timeline) with the owner group's forms:
accept (the standard change from the template for the window; its page follows) or decline with
a reason.

Who may see them: a signed-in agent (and the roles that imply it), as the API's reads. Who may
decide: a change manager or an agent of the CI's owner group (services/proactive_decisions.py),
with the page's CSRF field; anyone else gets 403, a signed-out browser the sign-in page.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from itilflow.gateway import browser
from itilflow.gateway.changes import start
from itilflow.gateway.console.base import form_value, language_of, render, signed_in_with
from itilflow.gateway.console.catalogue import texts
from itilflow.gateway.console.page_parts import message_page, when_in
from itilflow.gateway.deps import ChangeEngineDep, gateway_of
from itilflow.gateway.proactive import decider_of
from itilflow.models import (
    ProactiveNotice,
    get_proactive_timeline,
    list_notices,
    parse_proactive_ref,
)
from itilflow.services import changes
from itilflow.services.principals import Principal
from itilflow.services.proactive_decisions import (
    NotAllowedToDecide,
    NotOpen,
    accept,
    decline,
    may_decide,
)

log = logging.getLogger("itilflow.gateway.console")

router = APIRouter(tags=["console"])

READER = "agent"


def _page(request: Request) -> tuple[tuple[Request, Principal, str], dict[str, str]] | Response:
    person = signed_in_with(request, READER)
    if isinstance(person, Response):
        return person
    lang = language_of(request, person.name)
    return (request, person, lang), texts("proactive", lang)


def _show(page: tuple[Request, Principal, str], template: str, **values: Any) -> HTMLResponse:
    request, person, lang = page
    zone = gateway_of(request).policies.change.zone
    t = texts("proactive", lang)
    return render(request, person, template, lang=lang, t=t, when=when_in(zone), **values)


def _load(session: Session, ref: str) -> ProactiveNotice | None:
    try:
        return session.get(ProactiveNotice, parse_proactive_ref(ref))
    except ValueError:
        return None


@router.get("/proactive", response_class=HTMLResponse, include_in_schema=False)
def proactive_list_page(request: Request) -> Response:
    found = _page(request)
    if isinstance(found, Response):
        return found
    page, t = found
    with Session(gateway_of(request).engine) as session:
        notices = list_notices(session=session)
    return _show(page, "proactive_list.html", title=t["notices"], notices=notices)


@router.get("/proactive/{ref}", response_class=HTMLResponse, include_in_schema=False)
def proactive_page(ref: str, request: Request, error: str = "") -> Response:
    found = _page(request)
    if isinstance(found, Response):
        return found
    page, t = found
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        notice = _load(session, ref)
        if notice is None or notice.id is None:
            return message_page(page, t, t["not_found_title"], t["not_found"].format(ref=ref), 404)
        entries = get_proactive_timeline(session=session, proactive_id=notice.id)
        decider = decider_of(session, page[1])
    template = gateway.policies.change.templates.get(notice.template)
    parameters = {
        name: (notice.parameters or {}).get(name, "")
        for name in (template.parameters if template else notice.parameters or {})
    }
    return _show(
        page,
        "proactive.html",
        title=notice.number,
        notice=notice,
        entries=entries,
        parameters=parameters,
        may_decide=notice.status == "proposed" and may_decide(notice, decider),
        error=error,
    )


@router.post("/proactive/{ref}", response_class=HTMLResponse, include_in_schema=False)
def decide_page(
    ref: str, request: Request, form: browser.PageForm, change_engine: ChangeEngineDep
) -> Response:
    """accept or decline, from the page's forms."""
    found = _page(request)
    if isinstance(found, Response):
        return found
    page, t = found
    person = page[1]
    if not browser.csrf_ok(request, form):
        browser.log_csrf_refusal(request, f"proactive {ref}")
        return render(request, person, "expired.html", status_code=403, lang=page[2])
    action = form_value(form, "action", 20)
    gateway = gateway_of(request)
    error, change = "", None
    # The page is shown again (with the error) only once this session is closed: on SQLite a
    # second session would wait for this one's write lock.
    with Session(gateway.engine, expire_on_commit=False) as session:
        notice = _load(session, ref)
        if notice is None:
            return message_page(page, t, t["not_found_title"], t["not_found"].format(ref=ref), 404)
        decider = decider_of(session, person)
        reason = form_value(form, "reason", 2000)
        try:
            if action == "accept":
                given = {
                    name.removeprefix("p_"): form_value(form, name, 200)
                    for name in form
                    if name.startswith("p_") and form_value(form, name, 200)
                }
                change = accept(session, gateway.policies, notice, decider, parameters=given)
            elif action == "decline" and reason:
                decline(session, notice, decider, reason=reason)
            else:
                error = t["reason_needed"]
        except (NotAllowedToDecide, changes.NotAllowedToRequest) as exc:
            log.warning("%s may not %s %s: %s", person.name, action, ref, exc)
            return message_page(page, t, t["forbidden_title"], str(exc), 403)
        except (NotOpen, changes.StandardChangeRefused, changes.ChangeError) as exc:
            error = str(exc)
        if error:
            session.rollback()
        else:
            session.commit()
    if error:
        return proactive_page(ref, request, error=error)
    log.info("%s: %s by %s (console)", notice.number, action, person.name)
    if change is not None and change.id is not None:
        start(change_engine, change.id)
        return RedirectResponse(f"/changes/{change.number}", status_code=303)
    return RedirectResponse(f"/proactive/{notice.number}", status_code=303)
