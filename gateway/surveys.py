"""Satisfaction survey pages, reached from the signed link mailed on resolution.

The GET shows the form and changes nothing (mail scanners fetch every link); the POST records the
answer once (services/surveys.py records it, and opens a follow-up on a low score). The form
carries the CSRF field (gateway/browser.py); a POST without it records nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from itilflow import signing
from itilflow.gateway import browser
from itilflow.gateway.deps import Gateway, GatewayDep
from itilflow.gateway.html import render_page
from itilflow.models import Incident
from itilflow.services import surveys

router = APIRouter(prefix="/surveys", tags=["surveys"])


def page(
    title: str,
    *,
    incident: Incident | None = None,
    message: str = "",
    form: bool = False,
    csrf: browser.Csrf | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    response = render_page(
        "survey.html",
        status_code=status_code,
        title=title,
        incident=incident,
        message=message,
        form=form,
        csrf=csrf.field if csrf else "",
    )
    return csrf.set_on(response) if csrf else response


def _incident_of(token: str, session: Session, gateway: Gateway) -> Incident | HTMLResponse:
    """The incident the link names, or the page that says why the link is not valid."""
    try:
        payload = signing.verify(token, secret=gateway.secret, purpose=surveys.PURPOSE)
    except signing.BadToken as exc:
        return page("Survey link not valid", message=f"{exc}.", status_code=400)
    incident = session.get(Incident, payload.get("incident"))
    if incident is None:
        return page(
            "Survey link not valid", message="The incident no longer exists.", status_code=404
        )
    return incident


@router.get("/{token}", response_class=HTMLResponse)
def show_survey(token: str, request: Request, gateway: GatewayDep) -> HTMLResponse:
    with Session(gateway.engine) as session:
        found = _incident_of(token, session, gateway)
        if isinstance(found, HTMLResponse):
            return found
        if found.survey_score is not None:
            return page(
                "Thank you", incident=found, message="Your answer has already been recorded."
            )
        return page("Rate our service", incident=found, form=True, csrf=browser.csrf_for(request))


@router.post("/{token}", response_class=HTMLResponse)
def answer_survey(
    token: str, request: Request, gateway: GatewayDep, form: browser.PageForm
) -> HTMLResponse:
    score_text = (form.get("score") or [""])[0]
    comment = (form.get("comment") or [""])[0].strip()[:2000]
    with Session(gateway.engine) as session:  # a broken link says so first
        found = _incident_of(token, session, gateway)
    if isinstance(found, HTMLResponse):
        return found
    if not browser.csrf_ok(request, form):
        browser.log_csrf_refusal(request, f"survey of incident {found.id}")
        return page(
            "Your answer was not recorded",
            message="The form was not sent from the survey's page: open the link again.",
            status_code=403,
        )
    if score_text not in {"1", "2", "3", "4", "5"}:
        return page("Please choose a score", message="Choose a score from 1 to 5.", status_code=422)
    return _record(token, int(score_text), comment, gateway)


def _record(token: str, score: int, comment: str, gateway: Gateway) -> HTMLResponse:
    with Session(gateway.engine, expire_on_commit=False) as session:
        found = _incident_of(token, session, gateway)
        if isinstance(found, HTMLResponse):
            return found
        recorded = surveys.record_answer(
            session, found, score=score, comment=comment, policies=gateway.policies
        )
        if not recorded:
            session.rollback()
            return page(
                "Thank you", incident=found, message="Your answer has already been recorded."
            )
        session.commit()
    return page("Thank you", incident=found, message="Your answer has been recorded.")
