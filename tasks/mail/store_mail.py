"""Store each fetched mail exactly once, with the reporter's acknowledgement kept for delivery
in the same transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.utils import parseaddr

from prefect import task
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from itilflow import clock
from itilflow.models import MailMessage, get_engineer, get_latest_entry, session_scope
from itilflow.notifications.incident_audience import audience_emails
from itilflow.notifications.incident_plan import incident_plan, reporter_plan
from itilflow.notifications.mail_thread import mail_domain
from itilflow.notifications.plans import keep_for_delivery
from itilflow.runtime import Runtime, runtime
from itilflow.services import incidents
from itilflow.services.mail_intake import Mailbox, Taken, take_mail
from itilflow.services.mail_parse import parse_mail
from itilflow.tasks.mail.fetch_mail import FetchedMail

log = logging.getLogger("itilflow.mail")
ACTOR = "flow:read-mailbox"


@dataclass(frozen=True)
class StoredMail:
    uid: str
    outcome: str
    incident_id: int | None


@task(name="store-mail", retries=2, retry_delay_seconds=1)
def store_mail(fetched: list[FetchedMail]) -> list[StoredMail]:
    """Each mail in its own transaction: its incident or comment, its row (unique Message-ID)
    and, for a new incident, the reporter's acknowledgement. A mail stored before is
    recognised and changes nothing."""
    rt = runtime()
    mailbox = Mailbox(
        addresses=frozenset(
            {rt.policies.mail.address, parseaddr(rt.mail.mail_from)[1].strip().lower()}
        ),
        domain=mail_domain(rt.mail.mail_from),
    )
    return [_store_one(rt, mailbox, mail) for mail in fetched]


def _store_one(rt: Runtime, mailbox: Mailbox, fetched: FetchedMail) -> StoredMail:
    mail = parse_mail(fetched.raw)
    try:
        with session_scope(rt.engine) as session:
            taken = take_mail(session, mail, mailbox=mailbox, policies=rt.policies)
            if taken.acknowledge:
                _keep_acknowledgement(session, rt, taken)
            elif taken.outcome == "threaded":
                _keep_reply_for_assignee(session, rt, taken, sender=mail.sender)
    except IntegrityError:
        # Another intake stored the same Message-ID meanwhile: it is stored, once.
        return StoredMail(fetched.uid, "duplicate", None)
    except OperationalError:
        raise  # the database is away: the task's retry (or the next run) takes it again
    except Exception as exc:  # noqa: BLE001 (one unreadable mail must not block the mailbox)
        log.exception("mail %s could not be stored", mail.message_id)
        taken = _record_failure(rt, mail.message_id, mail.sender, mail.subject, exc)
    log.info("mail %s from %s: %s", mail.message_id, mail.sender, taken.outcome)
    return StoredMail(fetched.uid, taken.outcome, taken.incident_id)


def _keep_acknowledgement(session: Session, rt: Runtime, taken: Taken) -> None:
    assert taken.incident_id is not None
    session.flush()
    incident = incidents.load_incident(session, taken.incident_id)
    plan = reporter_plan(
        session,
        incident,
        template="mail_received",
        key="mail_received",
        actor=ACTOR,
        extra={},
        policies=rt.policies,
        public_url=rt.settings.public_url or "",
        mail_from=rt.mail.mail_from,
    )
    if plan is not None:
        keep_for_delivery(session, [plan], due_at=clock.now())


def _keep_reply_for_assignee(session: Session, rt: Runtime, taken: Taken, *, sender: str) -> None:
    """Whoever works on the incident hears of a reply by mail at once (the comment alone would
    wait for someone to open the incident); not the sender, when the assignee wrote it."""
    assert taken.incident_id is not None
    session.flush()
    incident = incidents.load_incident(session, taken.incident_id)
    emails = [a for a in audience_emails(session, incident, "assignee") if a.lower() != sender]
    entry = get_latest_entry(session=session, incident_id=incident.id or 0, kind="commented")
    if not emails or entry is None:
        return
    assignee = get_engineer(session=session, username=incident.assignee)
    plan = incident_plan(
        session,
        incident,
        template="reply_received",
        key=f"reply_received:{entry.id}",
        actor=ACTOR,
        emails=emails,
        tags=[],
        extra={"comment": entry.message, "sender": sender, "resumed": taken.resumed},
        policies=rt.policies,
        public_url=rt.settings.public_url or "",
        mail_from=rt.mail.mail_from,
        language=assignee.language if assignee is not None else None,
    )
    keep_for_delivery(session, [plan], due_at=clock.now())


def _record_failure(
    rt: Runtime, message_id: str, sender: str, subject: str, exc: Exception
) -> Taken:
    reason = f"{type(exc).__name__}: {exc}"[:2000]
    with session_scope(rt.engine) as session:
        session.add(
            MailMessage(
                message_id=message_id[:998],
                sender=sender[:320],
                subject=subject,
                outcome="failed",
                reason=reason,
            )
        )
    return Taken("failed", reason=reason)
