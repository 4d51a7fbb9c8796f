"""An agent's comment to the reporter (the console's "to the reporter", the API's comment with
`visibility: public`) goes out to the reporter as a mail in the incident's thread: its plan is
kept for the runner's delivery in the transaction that stores the comment (never lost, never
sent twice: flows/notify.py)."""

from __future__ import annotations

from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.deps import Gateway
from itilflow.models import Incident, get_engineer, get_latest_entry
from itilflow.notifications.incident_plan import reporter_plan
from itilflow.notifications.plans import keep_for_delivery


def keep_comment_for_reporter(
    session: Session, incident: Incident, *, note: str, author: str, gateway: Gateway
) -> bool:
    """Keep the mail of the comment just added (in this transaction) for the reporter; False
    when the incident has no reporter address to write to."""
    assert incident.id is not None
    session.flush()
    entry = get_latest_entry(session=session, incident_id=incident.id, kind="commented")
    plan = reporter_plan(
        session,
        incident,
        template="reporter_comment",
        key=f"reporter_comment:{entry.id if entry else None}",
        actor=author,
        # The reporter reads the person's name, not their username.
        extra={"comment": note, "author": display_name(session, author)},
        policies=gateway.policies,
        public_url=gateway.settings.public_url or "",
        mail_from=gateway.settings.mail_from,
    )
    if plan is None:
        return False
    keep_for_delivery(session, [plan], due_at=clock.now())
    return True


def display_name(session: Session, username: str) -> str:
    """The person's name as a mail's reader sees it (their username when not in the directory)."""
    person = get_engineer(session=session, username=username)
    return person.name if person is not None else username
