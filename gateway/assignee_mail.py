"""Someone given an incident by hand (the console's reassign) is told by mail at once, as
dispatch tells whoever it assigns: the plan is kept for the runner's delivery in the
transaction that reassigns (never lost, never sent twice: flows/notify.py)."""

from __future__ import annotations

from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.deps import Gateway
from itilflow.gateway.reporter_mail import display_name
from itilflow.models import Incident, get_engineer, get_latest_entry
from itilflow.notifications.incident_plan import incident_plan
from itilflow.notifications.plans import keep_for_delivery


def keep_reassignment_for_assignee(
    session: Session, incident: Incident, *, actor: str, note: str, gateway: Gateway
) -> bool:
    """Keep the mail to the incident's new assignee; False when they have no address, or
    gave it to themselves."""
    assert incident.id is not None
    session.flush()
    assignee = get_engineer(session=session, username=incident.assignee)
    if assignee is None or not assignee.email or assignee.username == actor:
        return False
    entry = get_latest_entry(session=session, incident_id=incident.id, kind="reassigned")
    plan = incident_plan(
        session,
        incident,
        template="reassigned",
        key=f"reassigned:{entry.id if entry else None}",
        actor=actor,
        emails=[assignee.email],
        tags=[],
        extra={"by": display_name(session, actor), "note": note},
        policies=gateway.policies,
        public_url=gateway.settings.public_url or "",
        mail_from=gateway.settings.mail_from,
        language=assignee.language,
    )
    keep_for_delivery(session, [plan], due_at=clock.now())
    return True
