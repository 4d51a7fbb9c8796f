"""Where a change's approvals stand, and the request mails to the current stage's approvers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import task
from sqlmodel import col, select

from itilflow import clock
from itilflow.models import Change, ChangeStatus, add_change_entry, session_scope
from itilflow.notifications.change_context import approval_mail, email_of
from itilflow.notifications.plans import NotificationPlan
from itilflow.runtime import runtime
from itilflow.services import changes

ACTOR = "flow:change"


@dataclass(frozen=True)
class ApprovalStep:
    """approved, rejected, stale (a newer version exists) or pending; when pending, the stage
    and the request mails to deliver (through the delivery pipeline: kept if they fail)."""

    outcome: str
    stage: str | None = None
    mails: list[NotificationPlan] = field(default_factory=list)


@task(name="approval-step", retries=2, retry_delay_seconds=[1, 5])
def approval_step(change_id: int, version: int) -> ApprovalStep:
    """Where the approvals stand; ask the current stage's approvers who were not asked yet.
    The requests are stored (and committed) before their mails exist: a link in a mail always
    names a stored request."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        # One run at a time past this point (PostgreSQL; SQLite writes one at a time anyway):
        # two decisions at once start two runs, and only one may ask the next stage.
        session.execute(select(Change.id).where(col(Change.id) == change_id).with_for_update())
        change = changes.load_change(session, change_id)
        state = changes.approval_state(session, change, version, rt.policies)
        if state.outcome in ("approved", "rejected"):
            _record_decided(session, change, version, state)
            return ApprovalStep(outcome=state.outcome)
        if state.outcome == "stale":
            return ApprovalStep(outcome="stale")
        assert state.stage is not None
        # Segregation of duties: only the stage's eligible approvers are asked; who is not,
        # and a stage that now waits for a change manager's override, go on the timeline.
        changes.note_segregation(session, change, version, state)
        mails = [
            mail
            for approver in state.eligible
            if approver not in state.asked
            if (mail := _ask(session, rt, change, state.stage.name, approver)) is not None
        ]
        return ApprovalStep(outcome="pending", stage=state.stage.name, mails=mails)


def _record_decided(session: Any, change: Any, version: int, state: Any) -> None:
    change.status = ChangeStatus.approved if state.outcome == "approved" else ChangeStatus.rejected
    change.updated_at = clock.now()
    session.add(change)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind=state.outcome,
        actor=ACTOR,
        message=f"version {version} {state.outcome}"
        + (f" at stage {state.stage.name}" if state.stage else ""),
    )


def _ask(session: Any, rt: Any, change: Any, stage: str, approver: str) -> NotificationPlan | None:
    """Store the approver's request and note it; its mail, or None without an address."""
    request = changes.create_approval_request(
        session=session, change=change, stage=stage, approver=approver, policies=rt.policies
    )
    address = email_of(session, approver)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="approval_requested",
        actor=ACTOR,
        message=f"{stage}: asked {approver}"
        + ("" if address else " (no email address on record: no approval code can reach them)"),
        data={"stage": stage, "approver": approver, "request": request.id},
    )
    if not address:
        return None
    return approval_mail(
        change,
        request,
        address=address,
        key=f"approval:{request.id}",  # one request, one mail, however often the step retries
        actor=ACTOR,
        reminder=False,
        secret=rt.secret,
        policies=rt.policies,
        public_url=rt.settings.public_url or "",
    )
