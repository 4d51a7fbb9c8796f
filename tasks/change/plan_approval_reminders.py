"""Remind approvers who have not answered, and tell the policy's escalation contact (once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlmodel import col, select

from itilflow import clock
from itilflow.models import (
    ApprovalRequest,
    Change,
    ChangeStatus,
    add_change_entry,
    session_scope,
)
from itilflow.notifications.change_context import approval_mail, email_of
from itilflow.notifications.plans import NotificationPlan
from itilflow.policies.change import ApprovalTiming
from itilflow.runtime import runtime

ACTOR = "flow:remind-approvers"


@task(name="plan-approval-reminders")
def plan_approval_reminders() -> list[NotificationPlan]:
    """A reminder to each approver with an open request every `remind_every`; after
    `escalate_after` one to the policy's escalation contact too (once). Returns the mails, for
    the delivery pipeline (a reminder that fails is kept and redelivered)."""
    rt = runtime()
    now = clock.now()
    mails: list[NotificationPlan] = []
    with session_scope(rt.engine) as session:
        open_requests = session.exec(
            select(ApprovalRequest).where(
                col(ApprovalRequest.decision).is_(None),
                col(ApprovalRequest.voided_at).is_(None),
                col(ApprovalRequest.locked_at).is_(None),  # its notice said whom to contact
                col(ApprovalRequest.expires_at) > now,
            )
        ).all()
        for request in open_requests:
            change = session.get(Change, request.change_id)
            if (
                change is None
                or change.status != ChangeStatus.awaiting_approval
                or change.version != request.version
            ):
                continue
            recipients = _due_recipients(request, rt.policies.change.timing, now)
            if recipients:
                session.add(request)
                mails += _remind(session, rt, change, request, recipients, now)
    return mails


def _due_recipients(request: ApprovalRequest, timing: ApprovalTiming, now: datetime) -> list[str]:
    """Who hears about the request now; marks the request reminded or escalated."""
    recipients = []
    if now - (request.reminded_at or request.sent_at) >= timing.remind_every:
        recipients.append(request.approver)
        request.reminded_at = now
    if (
        timing.escalate_to
        and request.escalated_at is None
        and now - request.sent_at >= timing.escalate_after
    ):
        recipients.append(timing.escalate_to)
        request.escalated_at = now
    return recipients


def _remind(
    session: Any,
    rt: Any,
    change: Change,
    request: ApprovalRequest,
    recipients: list[str],
    now: datetime,
) -> list[NotificationPlan]:
    assert change.id is not None
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="approval_reminded",
        actor=ACTOR,
        message=f"{request.stage}: reminded {', '.join(recipients)} "
        f"(waiting since {request.sent_at.isoformat()})",
    )
    return [
        approval_mail(
            change,
            request,
            address=address,
            key=f"reminder:{request.id}:{who}:{now.isoformat()}",
            actor=ACTOR,
            reminder=True,
            secret=rt.secret,
            policies=rt.policies,
            public_url=rt.settings.public_url or "",
        )
        for who in recipients
        if (address := email_of(session, who))
    ]
