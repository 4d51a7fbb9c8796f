"""The facts a change notification is given, and who receives it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from itilflow.models import ApprovalRequest, Change, Subject, change_number, get_engineer
from itilflow.notifications.messages import render_message
from itilflow.notifications.plans import NotificationPlan, make_plan
from itilflow.policies import Policies
from itilflow.services.changes import approval_token
from itilflow.services.changes.acceptance import acceptance_token


def change_url(public_url: str, change_id: int) -> str:
    """The change's page in the console (gateway/console/changes.py), which a browser opens."""
    return f"{public_url}/changes/{change_number(change_id)}"


def change_context(change: Change, *, policies: Policies, public_url: str) -> dict[str, Any]:
    assert change.id is not None
    zone = policies.change.zone

    def when(value: datetime | None) -> str | None:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else None

    return {
        "number": change.number,
        "title": change.title,
        "category": change.category,
        "status": change.status.value.replace("_", " "),
        "version": change.version,
        "risk_level": change.risk_level,
        "risk_score": change.risk_score,
        "cis": ", ".join(change.ci_names) or None,
        "planned_start": when(change.planned_start),
        "planned_end": when(change.planned_end),
        "url": change_url(public_url, change.id),
    }


def email_of(session: Session, username: str) -> str | None:
    engineer = get_engineer(session=session, username=username)
    return engineer.email if engineer else None


def approval_mail(
    change: Change,
    request: ApprovalRequest,
    *,
    address: str,
    key: str,
    actor: str,
    reminder: bool,
    secret: str,
    policies: Policies,
    public_url: str,
) -> NotificationPlan:
    """An approval request (or its reminder) to `address`, as a plan for the delivery pipeline:
    the change, the stage, and the request's signed approve and reject links. An escalation
    contact gets the approver's own link: they chase, not decide."""
    assert change.id is not None
    token = approval_token(request, secret=secret, policies=policies)
    link = f"{public_url}/approvals/{token}"
    context = {
        "change": change_context(change, policies=policies, public_url=public_url),
        "approver": request.approver,
        "stage": request.stage,
        "approve_url": f"{link}?decision=approve",
        "reject_url": f"{link}?decision=reject",
        "reasons": "; ".join(change.risk_reasons) or "none",
        "reminder": reminder,
    }
    return make_plan(
        Subject("change", change.id),
        number=change_number(change.id),
        key=key,
        template="approval_request",
        actor=actor,
        emails=[address],
        tags=[],
        message=render_message("approval_request", policies.change.language, context),
    )


def link_locked_mails(
    session: Session,
    change: Change,
    request: ApprovalRequest,
    *,
    contacts: list[str],
    codes: int,
    policies: Policies,
    public_url: str,
) -> list[NotificationPlan]:
    """The notice that the approver's link locked after its code cap: to the approver and to
    each of `contacts` (the change managers) with an address on record."""
    assert change.id is not None
    context = {
        "change": change_context(change, policies=policies, public_url=public_url),
        "approver": request.approver,
        "stage": request.stage,
        "codes": codes,
        "contacts": ", ".join(contacts) or "the change's requester",
    }
    message = render_message("approval_link_locked", policies.change.language, context)
    return [
        make_plan(
            Subject("change", change.id),
            message,
            number=change_number(change.id),
            key=f"link-locked:{request.id}:{who}",
            template="approval_link_locked",
            actor="gateway",
            emails=[address],
            tags=[],
        )
        for who in dict.fromkeys([request.approver, *contacts])
        if (address := email_of(session, who))
    ]


def what_was_done(change: Change) -> str:
    """The review's steps and checks in one line, for the requester who is asked to accept."""
    actions = (change.review or {}).get("actions", [])
    steps = [a["name"] for a in actions if a.get("phase") == "step" and a.get("ok")]
    checks = [a["name"] for a in actions if a.get("phase") == "verify" and a.get("ok")]
    done = ", ".join(steps) or change.title
    return done + (f"; verified: {', '.join(checks)}" if checks else "")


def acceptance_mail(
    change: Change,
    request: ApprovalRequest,
    *,
    address: str,
    secret: str,
    policies: Policies,
    public_url: str,
) -> NotificationPlan:
    """The requester's acceptance request with its signed accept and reject links, as a plan
    for the delivery pipeline (one per acceptance request: a rerun sends it once)."""
    assert change.id is not None
    link = f"{public_url}/acceptance/{acceptance_token(request, secret=secret)}"
    until = request.expires_at.astimezone(policies.change.zone).strftime("%Y-%m-%d %H:%M %Z")
    context = {
        "change": change_context(change, policies=policies, public_url=public_url),
        "requester": request.approver,
        "accept_url": f"{link}?decision=accept",
        "reject_url": f"{link}?decision=reject",
        "accept_by": until,
        "done": what_was_done(change),
    }
    return make_plan(
        Subject("change", change.id),
        number=change_number(change.id),
        key=f"acceptance:{request.id}",
        template="acceptance_request",
        actor="flow:change",
        emails=[address],
        tags=[],
        message=render_message("acceptance_request", policies.change.language, context),
    )
