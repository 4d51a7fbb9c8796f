"""Plan the mail that asks a change's requester to accept it."""

from __future__ import annotations

from prefect import task
from sqlmodel import col, select

from itilflow.models import ApprovalRequest, session_scope
from itilflow.notifications.change_context import acceptance_mail
from itilflow.notifications.plans import NotificationPlan
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.services.changes import acceptance


@task(name="plan-acceptance-request", retries=2, retry_delay_seconds=1)
def plan_acceptance_request(change_id: int) -> list[NotificationPlan]:
    """The acceptance request of the change's current version, to the requester's address on
    record; nothing when it waits for no acceptance (its key makes a rerun send it once)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        request = session.exec(
            select(ApprovalRequest)
            .where(
                col(ApprovalRequest.change_id) == change_id,
                col(ApprovalRequest.version) == change.version,
                col(ApprovalRequest.stage) == acceptance.STAGE,
                col(ApprovalRequest.decision).is_(None),
                col(ApprovalRequest.voided_at).is_(None),
            )
            .order_by(col(ApprovalRequest.id).desc())
        ).first()
        address = acceptance.code_address(session, change)
        if request is None or address is None:
            return []
        return [
            acceptance_mail(
                change,
                request,
                address=address,
                secret=rt.secret,
                policies=rt.policies,
                public_url=rt.settings.public_url or "",
            )
        ]
