from __future__ import annotations

from datetime import timedelta

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
from itilflow.notifications import asend_email, render_message
from itilflow.notifications.change_context import change_context, email_of
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="send-approval-reminders")
async def send_approval_reminders() -> int:
    """Remind each approver with an open request every `remind_every`; after `escalate_after`
    tell the policy's escalation contact too (once)."""
    rt = runtime()
    timing = rt.policies.change.timing
    now = clock.now()
    mails = []
    with session_scope(rt.engine) as session:
        open_requests = session.exec(
            select(ApprovalRequest).where(
                col(ApprovalRequest.decision).is_(None),
                col(ApprovalRequest.voided_at).is_(None),
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
            last = request.reminded_at or request.sent_at
            recipients = []
            if now - last >= timing.remind_every:
                recipients.append(request.approver)
                request.reminded_at = now
            if (
                timing.escalate_to
                and request.escalated_at is None
                and now - request.sent_at >= timing.escalate_after
            ):
                recipients.append(timing.escalate_to)
                request.escalated_at = now
            if not recipients:
                continue
            session.add(request)
            token = changes.approval_token(request, secret=rt.secret, policies=rt.policies)
            link = f"{rt.settings.public_url}/approvals/{token}"
            context = {
                "change": change_context(
                    change, policies=rt.policies, public_url=rt.settings.public_url or ""
                ),
                "approver": request.approver,
                "stage": request.stage,
                "approve_url": f"{link}?decision=approve",
                "reject_url": f"{link}?decision=reject",
                "reasons": "; ".join(change.risk_reasons) or "none",
                "reminder": True,
            }
            add_change_entry(
                session=session,
                change_id=change.id or 0,
                kind="approval_reminded",
                actor="flow:remind-approvers",
                message=f"{request.stage}: reminded {', '.join(recipients)} "
                f"(waiting since {request.sent_at.isoformat()})",
            )
            # The escalation contact sees the approver's own link: they chase, not decide.
            for who in recipients:
                if address := email_of(session, who):
                    mails.append((address, context))
    for address, context in mails:
        message = render_message("approval_request", rt.policies.change.language, context)
        await asend_email(message, to=[address], settings=rt.mail)
    return len(mails)


@task(name="start-waiting-changes")
async def start_waiting_changes(older_than: timedelta = timedelta(minutes=1)) -> int:
    """Start a run for each change that has none: stored while the engine was down, or whose
    paused run died with its worker (a paused run lives in its worker's process)."""
    from uuid import UUID

    from prefect import get_client

    from itilflow.engine import PrefectChangeEngine

    rt = runtime()
    with session_scope(rt.engine) as session:
        candidates = session.exec(
            select(Change).where(
                col(Change.status).in_((ChangeStatus.submitted, ChangeStatus.awaiting_approval)),
                Change.updated_at <= clock.now() - older_than,
            )
        ).all()
    orphans = []
    async with get_client() as client:
        for change in candidates:
            if change.flow_run_id is None:
                orphans.append(change)
                continue
            run = await client.read_flow_run(UUID(change.flow_run_id))
            if run.state is not None and run.state.is_final():
                orphans.append(change)
    engine = PrefectChangeEngine()
    for change in orphans:
        assert change.id is not None
        with session_scope(rt.engine) as session:
            add_change_entry(
                session=session,
                change_id=change.id,
                kind="process_restarted",
                actor="flow:remind-approvers",
                message="no live run for this change: starting one",
            )
        await engine.start(change.id)
    return len(orphans)


@task(name="recover-lost-implementations")
async def recover_lost_implementations() -> int:
    """Start a recovery for each change still implementing (or marked crashed) whose run ended,
    or is gone: the safety net under the heartbeat and crash triggers of `recover-change` (an
    event missed while the Prefect server was down, a run deleted by hand)."""
    from uuid import UUID

    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    rt = runtime()
    with session_scope(rt.engine) as session:
        candidates = session.exec(
            select(Change).where(col(Change.status).in_(changes.MID_IMPLEMENTATION))
        ).all()
    lost = []
    async with get_client() as client:
        for change in candidates:
            if change.flow_run_id is None:
                continue
            try:
                run = await client.read_flow_run(UUID(change.flow_run_id))
            except ObjectNotFound:
                lost.append(change.flow_run_id)
                continue
            if run.state is not None and run.state.is_final():
                lost.append(change.flow_run_id)
    for run_id in lost:
        await run_deployment(
            "recover-change/recover-change", parameters={"flow_run": run_id}, timeout=0
        )
    return len(lost)
