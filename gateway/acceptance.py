"""The page behind a change's emailed acceptance link (services/changes/acceptance.py).

As with approval links: a GET only shows what was done and the form (mail scanners fetch every
link); every form carries the CSRF field. Who decides: the requester signed in in this browser,
a change manager signed in (recorded as deciding on the requester's behalf), or, with nobody
signed in, whoever enters the one-time code mailed to the requester's address on record. Anyone
else signed in is refused, and the refusal is on the change's timeline. A rejection needs a
reason; a reopened change's next run is started at once (should that fail, `remind-approvers`
starts it: the change is stored as submitted).
"""

import asyncio
import logging
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from itilflow.gateway import browser
from itilflow.gateway.approvals import mail_code
from itilflow.gateway.deps import Gateway, GatewayDep
from itilflow.gateway.html import render_page
from itilflow.models import ApprovalRequest, Change, add_change_entry
from itilflow.policies import format_duration
from itilflow.services import changes
from itilflow.services.changes import acceptance
from itilflow.services.changes.approvals import (
    consume_approval_code,
    issue_approval_code,
    mask_address,
    withdraw_approval_code,
)
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.acceptance")

router = APIRouter(prefix="/acceptance", tags=["acceptance"])

NOT_RECORDED = "Your decision was not recorded"
DECISIONS = ("accept", "reject")


def page(
    title: str, *, csrf: browser.Csrf | None = None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    shown = {"change": None, "request": None, "message": "", "form": False, "by_code": None}
    shown |= {"code_form": None, "decider": None} | values
    change = shown["change"]
    asks = change is not None and bool(shown["form"] or shown["code_form"])
    response = render_page(
        "acceptance.html",
        status_code=status_code,
        title=title,
        csrf=csrf.field if csrf else "",
        done=(change.review or {}).get("actions", []) if asks else [],
        **shown,
    )
    if csrf is not None:
        csrf.set_on(response)
    return response


def _open(gateway: Gateway, token: str) -> tuple[ApprovalRequest, Change] | HTMLResponse:
    """The link's request and change, or the page that says why it cannot be used."""
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            request, change = acceptance.read_acceptance_token(
                session, token, secret=gateway.secret
            )
        except changes.DecisionRefused as exc:
            return page("This link cannot be used", message=f"{exc}.", status_code=400)
    reason = acceptance.why_not_open(request, change)
    if reason:
        return page(
            "No decision needed",
            change=change,
            request=request,
            message=f"{reason}.",
            status_code=409,
        )
    return request, change


def _refused(
    gateway: Gateway, request: ApprovalRequest, change: Change, person: Principal
) -> HTMLResponse:
    """Someone signed in who is neither the requester nor a change manager: on the timeline."""
    log.warning("acceptance request %s: %s may not decide: refused", request.id, person.name)
    with Session(gateway.engine) as session:
        add_change_entry(
            session=session,
            change_id=request.change_id,
            kind="acceptance_refused",
            actor=person.name,
            message=f"{person.name} used {request.approver}'s acceptance link while signed in "
            "as themselves: nothing decided",
            data={"request": request.id, "requester": request.approver},
        )
        session.commit()
    return page(
        "This link is for another person",
        change=change,
        request=request,
        message=f"Only {request.approver}, who requested {change.number}, or a change manager "
        f"on their behalf may accept or reject it; you are signed in as {person.name}.",
        status_code=403,
    )


@router.get("/{token}", response_class=HTMLResponse)
def show_acceptance(
    token: str,
    http_request: Request,
    gateway: GatewayDep,
    decision: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    person = browser.current_person(http_request)
    opened = _open(gateway, token)
    if isinstance(opened, HTMLResponse):
        return opened
    request, change = opened
    decider = acceptance.decider_for(person, request)
    if person is not None and decider is None:
        return _refused(gateway, request, change, person)
    by_code = None
    if decider is None:
        with Session(gateway.engine) as session:
            address = acceptance.code_address(session, change)
        by_code = mask_address(address) if address else "your address"
    verb = {"accept": "Accept", "reject": "Reject"}.get(decision or "", "Accept or reject")
    return page(
        f"{verb} {change.number}?",
        csrf=browser.csrf_for(http_request),
        change=change,
        request=request,
        form=True,
        by_code=by_code,
        decider=decider and _as(decider, request),
    )


def _as(decider: acceptance.Decider, request: ApprovalRequest) -> str:
    return decider.name + (f" on behalf of {request.approver}" if decider.on_behalf else "")


@router.post("/{token}", response_class=HTMLResponse)
def decide_acceptance(
    token: str, http_request: Request, gateway: GatewayDep, form: browser.PageForm
) -> HTMLResponse:
    decision = (form.get("decision") or [""])[0]
    reason = (form.get("reason") or [""])[0].strip()[:2000]
    code = (form.get("code") or [""])[0].strip()[:64]
    person = browser.current_person(http_request)
    opened = _open(gateway, token)
    if isinstance(opened, HTMLResponse):
        return opened
    request, change = opened
    if not browser.csrf_ok(http_request, form):
        browser.log_csrf_refusal(http_request, f"acceptance request {request.id}")
        return page(
            NOT_RECORDED,
            message="The form was not sent from this link's page: open the link again.",
            status_code=403,
        )
    decider = acceptance.decider_for(person, request)
    if person is not None and decider is None:
        return _refused(gateway, request, change, person)
    csrf = browser.csrf_for(http_request)
    if decision not in DECISIONS:
        return page(NOT_RECORDED, message=f"unknown decision {decision!r}.", status_code=409)
    if decision == "reject" and not reason:
        return page(
            NOT_RECORDED,
            csrf=csrf,
            change=change,
            request=request,
            form=True,
            by_code=None if decider else "your address",
            decider=decider and _as(decider, request),
            message="A rejection needs a reason: say what does not work.",
            status_code=409,
        )
    if decider is None and not code:
        return _send_code(gateway, csrf, request, change, decision, reason)
    return _decide(gateway, csrf, request, change, decision, reason, code, decider)


def _decide(
    gateway: Gateway,
    csrf: browser.Csrf,
    request: ApprovalRequest,
    change: Change,
    decision: str,
    reason: str,
    code: str,
    decider: acceptance.Decider | None,
) -> HTMLResponse:
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            if decider is None:  # the code proves the requester
                consume_approval_code(
                    session=session,
                    request=request,
                    decision=acceptance.CODE_DECISION[decision],
                    code=code,
                    secret=gateway.secret,
                    policy=gateway.policies.change.approval_links,
                )
                decider, via = acceptance.Decider(request.approver), "link and code"
            else:
                via = "link, signed in"
            outcome = acceptance.decide_acceptance(
                session=session,
                request=request,
                decision=decision,
                reason=reason,
                decider=decider,
                via=via,
                policies=gateway.policies,
            )
            session.commit()
        except changes.WrongCode as exc:
            session.commit()  # the wrong attempt counts
            return page(
                NOT_RECORDED,
                csrf=csrf,
                change=change,
                request=request,
                message=f"{exc}.",
                code_form=None
                if exc.attempts_left <= 0
                else {"decision": decision, "reason": reason},
                status_code=409,
            )
        except changes.DecisionRefused as exc:
            session.rollback()
            return page(NOT_RECORDED, message=f"{exc}.", status_code=409)
    if outcome == "reopened":
        _start_next_run(gateway, change)
    words = {"accepted": "accepted and closed", "reopened": "rejected and reopened"}
    return page(
        "Thank you",
        change=change,
        request=request,
        message=f"{change.number} is {words.get(outcome, 'rejected and closed')}.",
    )


def _start_next_run(gateway: Gateway, change: Change) -> None:
    assert change.id is not None
    try:
        anyio.from_thread.run(gateway.change_engine.start, change.id)
    except Exception as exc:  # noqa: BLE001 (stored as submitted: the sweep starts it)
        log.warning("%s: the run after the reopening did not start: %s", change.number, exc)


def _send_code(
    gateway: Gateway,
    csrf: browser.Csrf,
    request: ApprovalRequest,
    change: Change,
    decision: str,
    reason: str,
) -> HTMLResponse:
    """Mail a one-time code to the requester's address on record; decide nothing."""
    policy = gateway.policies.change.approval_links
    shown = {"change": change, "request": request, "csrf": csrf}
    with Session(gateway.engine, expire_on_commit=False) as session:
        address = acceptance.code_address(session, change)
        if address is None:
            return page(
                "The code could not be sent",
                **shown,
                status_code=409,
                message="There is no address on record for the requester: ask the change "
                "manager to decide on their behalf.",
            )
        try:
            issued, plain = issue_approval_code(
                session=session,
                request=request,
                decision=acceptance.CODE_DECISION[decision],
                secret=gateway.secret,
                policy=policy,
            )
        except changes.CodeNotSent:
            return page(
                "A code was sent already",
                **shown,
                status_code=429,
                message=f"A code was mailed less than {format_duration(policy.code_resend_after)}"
                " ago: enter it below.",
                code_form={"decision": decision, "reason": reason},
            )
        except changes.DecisionRefused as exc:
            session.commit()  # a link locked past its cap stays locked
            return page(NOT_RECORDED, message=f"{exc}.", status_code=409)
        session.commit()  # stored before it is mailed: the requester may be quick
    masked = mask_address(address)
    extras = {"requester": request.approver, "decision": decision}
    if not asyncio.run(mail_code(gateway, "acceptance_code", change, extras, address, plain)):
        with Session(gateway.engine) as session:
            assert issued.id is not None
            withdraw_approval_code(session=session, code_id=issued.id)
            session.commit()
        return page(
            "The code could not be sent",
            **shown,
            form=True,
            by_code=masked,
            status_code=503,
            message=f"The mail with your code to {masked} could not be sent, so nothing was "
            "decided. Please press the button again in a moment.",
        )
    return page(
        f"Enter the code sent to {masked}",
        **shown,
        message=f"A code to {decision} {change.number} was mailed to {masked}. Enter it below "
        f"within {format_duration(policy.code_valid_for)}; nothing is decided until then.",
        code_form={"decision": decision, "reason": reason},
    )
