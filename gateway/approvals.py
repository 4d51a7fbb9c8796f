"""The pages behind the emailed approval links of a change.

An approval link's GET only shows a confirmation page: mail security scanners fetch every link
before the person clicks, so a GET never decides and never sends anything. The link alone does not
prove who clicks (mails get forwarded), so with `approval_links.confirm_by_code` the page's button
mails a one-time code to the approver's own address from the people data
(services/changes/approval_codes.py), and only a second POST with that code decides, once,
atomically; the paused change run is then resumed with the decision.

Every form carries the CSRF field (gateway/browser.py), read by a dependency: the routes are plain
`def`s, run in FastAPI's thread pool, so that their database waits never hold the event loop.
The link works for an approver who is not signed in (the link and the mailed code are its
credential); a browser signed in as someone else than the link's approver is told so and decides
nothing.
"""

import asyncio
import logging
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from itilflow import clock
from itilflow.gateway import browser
from itilflow.gateway.console.catalogue import texts
from itilflow.gateway.console.plan_view import plan_view
from itilflow.gateway.deps import Gateway, GatewayDep
from itilflow.gateway.html import render_page
from itilflow.models import ApprovalRequest, Change, add_change_entry
from itilflow.notifications import NotificationError, asend_email, render_message
from itilflow.notifications.change_context import change_context, link_locked_mails
from itilflow.notifications.plans import keep_for_delivery
from itilflow.policies import format_duration
from itilflow.services import changes
from itilflow.services.changes import approval_codes
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.changes")

router = APIRouter(prefix="/approvals", tags=["approvals"])

NOT_RECORDED = "Your decision was not recorded"


def page(
    title: str, *, csrf: browser.Csrf | None = None, status_code: int = 200, **values: Any
) -> HTMLResponse:
    """The approval page; `csrf` for a page with a form (its cookie is set when new). A page
    that asks for a decision or its code shows the change's whole plan first."""
    shown = {"change": None, "request": None, "message": "", "form": False, "by_code": None}
    shown |= {"code_form": None} | values
    change = shown["change"]
    asks = change is not None and bool(shown["form"] or shown["code_form"])
    response = render_page(
        "approval.html",
        status_code=status_code,
        title=title,
        csrf=csrf.field if csrf else "",
        plan=plan_view(change.plan) if asks else None,
        t=texts("changes", "en"),  # the page is in English, as it was before the plan
        **shown,
    )
    if csrf is not None:
        csrf.set_on(response)
    return response


def for_someone_else(
    person: Principal | None, request: ApprovalRequest, change: Change
) -> HTMLResponse | None:
    """The refusal page when this browser is signed in as another person than the approver."""
    if person is None or person.name == request.approver:
        return None
    return page(
        "This link is for another person",
        change=change,
        request=request,
        message=f"This approval link is for {request.approver}, and you are signed in as "
        f"{person.name}: nothing can be decided here. If {request.approver} should decide, "
        "they open the link themselves.",
        status_code=403,
    )


@router.get("/{token}", response_class=HTMLResponse)
def confirm_approval(
    token: str,
    http_request: Request,
    gateway: GatewayDep,
    decision: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    person = browser.current_person(http_request)  # before the session: it notes the use
    with Session(gateway.engine) as session:
        try:
            request, change = changes.read_token(session, token, secret=gateway.secret)
        except changes.DecisionRefused as exc:
            return page("This link cannot be used", message=f"{exc}.", status_code=400)
        reason = _with_contacts(session, gateway, change, changes.why_not_open(request, change))
        if reason:
            return page(
                "This link is locked" if request.locked_at else "No decision needed",
                change=change,
                request=request,
                message=reason + ".",
                status_code=409,
            )
        if refused := for_someone_else(person, request, change):
            return refused
        verb = {"approve": "Approve", "reject": "Reject"}.get(decision or "", "Decide on")
        by_code = None
        if gateway.policies.change.approval_links.confirm_by_code:
            masked = approval_codes.masked_address_of(session, request.approver)
            by_code = masked or "your address"
        return page(
            f"{verb} {change.number}?",
            csrf=browser.csrf_for(http_request),
            change=change,
            request=request,
            form=True,
            by_code=by_code,
        )


@router.post("/{token}", response_class=HTMLResponse)
def decide_approval(
    token: str, http_request: Request, gateway: GatewayDep, form: browser.PageForm
) -> HTMLResponse:
    decision = (form.get("decision") or [""])[0]
    comment = (form.get("comment") or [""])[0].strip()[:2000]
    code = (form.get("code") or [""])[0].strip()[:64]
    person = browser.current_person(http_request)  # before the session: it notes the use
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            request, change = changes.read_token(session, token, secret=gateway.secret)
        except changes.DecisionRefused as exc:
            return page("This link cannot be used", message=f"{exc}.", status_code=400)
        reason = _with_contacts(session, gateway, change, changes.why_not_open(request, change))
    if reason:  # said first: a used link says so, not that its code is spent
        return page(NOT_RECORDED, message=reason + ".", status_code=409)
    if not browser.csrf_ok(http_request, form):
        browser.log_csrf_refusal(http_request, f"approval request {request.id}")
        return page(
            NOT_RECORDED,
            message="The form was not sent from this link's page: open the link again.",
            status_code=403,
        )
    if refused := for_someone_else(person, request, change):
        assert person is not None
        _record_refusal(gateway, request, person)
        return refused
    csrf = browser.csrf_for(http_request)
    if decision not in ("approve", "reject"):  # a blank form (a scanner) gets no code
        return page(
            NOT_RECORDED,
            message=f"unknown decision {decision!r}: expected approve or reject.",
            status_code=409,
        )
    refused = _refuse_by_segregation(gateway, request, decision)
    if refused is not None:  # before any code is mailed: the rule, not the code, refuses
        return refused
    if gateway.policies.change.approval_links.confirm_by_code and not code:
        return _send_code(gateway, csrf, request, change, decision, comment)
    return _decide(gateway, csrf, request, change, decision, comment, code)


def _record_refusal(gateway: Gateway, request: ApprovalRequest, person: Principal) -> None:
    """On the change's timeline: someone signed in as another person used this link."""
    log.warning(
        "approval request %s: %s (signed in) used %s's link: refused",
        request.id,
        person.name,
        request.approver,
    )
    with Session(gateway.engine) as session:
        add_change_entry(
            session=session,
            change_id=request.change_id,
            kind="approval_refused",
            actor=person.name,
            message=f"{request.stage}: {person.name} used {request.approver}'s approval link "
            "while signed in as themselves: nothing decided",
            data={"request": request.id, "approver": request.approver},
        )
        session.commit()


def _decide(
    gateway: Gateway,
    csrf: browser.Csrf,
    request: ApprovalRequest,
    change: Change,
    decision: str,
    comment: str,
    code: str,
) -> HTMLResponse:
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            changes.decide_by_link(
                session=session,
                request=request,
                decision=decision,
                comment=comment,
                code=code,
                secret=gateway.secret,
                policy=gateway.policies.change.approval_links,
                segregation=gateway.policies.change.segregation,
            )
            session.commit()
        except changes.SegregationRefused as exc:
            session.rollback()
            return _segregation_refused(gateway, request, decision, exc)
        except changes.WrongCode as exc:
            session.commit()  # the wrong attempt counts
            void = exc.attempts_left <= 0
            return page(
                NOT_RECORDED,
                csrf=csrf,
                change=change,
                request=request,
                message=f"{exc}.",
                form=void,
                by_code=void and approval_codes.masked_address_of(session, request.approver),
                code_form=None if void else {"decision": decision, "comment": comment},
                status_code=409,
            )
        except changes.DecisionRefused as exc:
            session.rollback()
            return page(NOT_RECORDED, message=f"{exc}.", status_code=409)
    # The decision is stored: the change's next run takes it up (asks the next stage, or
    # implements). Nothing ran while it waited; should this start fail, `remind-approvers`
    # starts a run for every decision that none took up.
    assert change.id is not None
    try:
        # The engine's Prefect client lives on the event loop: the start is handed to it.
        anyio.from_thread.run(gateway.change_engine.start, change.id)
    except Exception as exc:  # noqa: BLE001 (the decision stands; the safety net carries it on)
        log.warning("%s: the run after the decision did not start: %s", change.number, exc)
    return page(
        "Thank you",
        change=change,
        request=request,
        message=f"Your decision '{decision}' on {change.number} is recorded.",
    )


def _send_code(
    gateway: Gateway,
    csrf: browser.Csrf,
    request: ApprovalRequest,
    change: Change,
    decision: str,
    comment: str,
) -> HTMLResponse:
    """Have a one-time code mailed to the approver the link was made for; decide nothing."""
    link_policy = gateway.policies.change.approval_links
    code_form = {"decision": decision, "comment": comment}
    shown = {"change": change, "request": request, "csrf": csrf}
    sending = approval_codes.send_approval_code(
        open_session=lambda: Session(gateway.engine, expire_on_commit=False),
        request=request,
        decision=decision,
        secret=gateway.secret,
        policy=link_policy,
        mail_code=lambda address, code: _mail_code(
            gateway, request, change, decision, address, code
        ),
        on_locked=lambda session, locked: _keep_lock_notices(gateway, session, change, locked),
    )
    try:
        # A coroutine that opens sessions between its awaits: on an event loop of this worker
        # thread's own, so that its database waits never hold the gateway's loop.
        sent = asyncio.run(sending)
    except changes.LinkLocked as exc:
        with Session(gateway.engine) as session:
            message = _with_contacts(session, gateway, change, str(exc))
        return page("This link is locked", **shown, message=f"{message}.", status_code=409)
    except approval_codes.NoAddressOnRecord as exc:
        message = f"{exc}: no code can reach you; ask the change manager."
        return page("The code could not be sent", **shown, message=message, status_code=409)
    except approval_codes.CodeSentRecently as exc:
        wait = format_duration(link_policy.code_resend_after)
        return page(
            "A code was sent already",
            **shown,
            message=f"A code was mailed to {exc.masked_address} less than {wait} ago: enter it "
            f"below, or ask for a new one after {wait}.",
            code_form=code_form,
            status_code=429,
        )
    except approval_codes.CodeMailFailed as exc:
        return page(
            "The code could not be sent",
            **shown,
            message=f"The mail with your code to {exc.masked_address} could not be sent, so "
            "nothing was decided. Please press the button again in a moment.",
            form=True,
            by_code=exc.masked_address,
            status_code=503,
        )
    except changes.DecisionRefused as exc:
        return page(NOT_RECORDED, message=f"{exc}.", status_code=409)
    masked = sent.masked_address
    return page(
        f"Enter the code sent to {masked}",
        **shown,
        message=f"A code to {decision} {change.number} was mailed to {masked}. Enter it "
        f"below within {format_duration(link_policy.code_valid_for)}; nothing is decided "
        "until then.",
        code_form=code_form,
    )


def _with_contacts(
    session: Session, gateway: Gateway, change: Change, reason: str | None
) -> str | None:
    """A locked link's reason says whom to contact to decide instead."""
    if reason != changes.LOCKED:
        return reason
    contacts = approval_codes.lock_contacts(session, gateway.policies)
    who = ", ".join(contacts) or "the change's requester"
    return f"{reason}; to decide on {change.number}, contact {who}"


def _keep_lock_notices(
    gateway: Gateway, session: Session, change: Change, request: ApprovalRequest
) -> None:
    """The approver and every change manager are told, through the delivery pipeline, in the
    transaction that locks the link."""
    plans = link_locked_mails(
        session,
        change,
        request,
        contacts=approval_codes.lock_contacts(session, gateway.policies),
        codes=gateway.policies.change.approval_links.max_codes_per_link,
        policies=gateway.policies,
        public_url=gateway.settings.public_url or "",
    )
    keep_for_delivery(session, plans, due_at=clock.now())


def _refuse_by_segregation(
    gateway: Gateway, request: ApprovalRequest, decision: str
) -> HTMLResponse | None:
    """The refusal page, recorded on the change's timeline, when the link's approver may not
    decide under segregation of duties; None when they may."""
    with Session(gateway.engine) as session:
        try:
            changes.check_segregation(session, request, gateway.policies.change.segregation)
            return None
        except changes.SegregationRefused as exc:
            refused = exc
    return _segregation_refused(gateway, request, decision, refused)  # after the read ended


def _segregation_refused(
    gateway: Gateway, request: ApprovalRequest, decision: str, exc: Exception
) -> HTMLResponse:
    with Session(gateway.engine) as session:
        changes.record_refusal(session, request, decision, str(exc), actor="gateway", via="link")
        session.commit()
    return page(NOT_RECORDED, message=f"{exc}.", status_code=409)


async def _mail_code(
    gateway: Gateway,
    request: ApprovalRequest,
    change: Change,
    decision: str,
    address: str,
    code: str,
) -> bool:
    """Mail the code (the runtime's mail settings, with a short timeout); False when it failed."""
    extras = {"approver": request.approver, "decision": decision}
    return await mail_code(gateway, "approval_code", change, extras, address, code)


async def mail_code(
    gateway: Gateway,
    template: str,
    change: Change,
    extras: dict[str, Any],
    address: str,
    code: str,
) -> bool:
    """Mail a one-time code of a change's link (`template`: approval_code or acceptance_code)
    at once, with the code mail's short timeout; False when it failed."""
    policies = gateway.policies
    valid_for = policies.change.approval_links.code_valid_for
    context = {
        "change": change_context(
            change, policies=policies, public_url=gateway.settings.public_url or ""
        ),
        "code": code,
        "valid_minutes": int(valid_for.total_seconds() // 60),
        **extras,
    }
    message = render_message(template, policies.change.language, context)
    try:
        await asend_email(message, to=[address], settings=gateway.code_mail)
    except (NotificationError, ValueError) as exc:
        log.warning("%s for %s failed: %s", template, change.number, exc)
        return False
    return True
