"""A mail from the service mailbox, taken in the caller's transaction: a new incident, a reply
on the incident it names, or a refusal on record. Exactly once: the mail's row (its Message-ID
unique) is written with the incident or comment it made, so a mail taken twice (the process died
before the mailbox heard it was stored) finds its row and changes nothing.

    taken = take_mail(session, parse_mail(raw), policy=policies.mail, policies=policies, ...)
    session.commit()        # and only then: mark it done in the mailbox
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    Incident,
    IncidentCreate,
    IncidentStatus,
    MailAttachment,
    MailMessage,
    add_timeline,
    count_incidents_reported_by,
    count_mails_from,
    get_incident,
    get_mail_by_message_id,
    incident_of_message_ids,
    parse_incident_ref,
    person_by_email,
)
from itilflow.policies import MailPolicy, Policies
from itilflow.services import incident_actions, incidents
from itilflow.services.mail_parse import (
    InboundMail,
    loop_reason,
    subject_numbers,
    thread_ids,
    thread_numbers,
)

SOURCE = "email"


@dataclass(frozen=True)
class Taken:
    """What became of one mail. `outcome`: "opened", "threaded", "duplicate" (taken before),
    or why it was ignored: "own", "bounce", "auto_reply", "rate_limited"."""

    outcome: str
    incident_id: int | None = None
    reason: str = ""
    resumed: bool = False

    @property
    def acknowledge(self) -> bool:
        """The reporter is sent the new incident's reference."""
        return self.outcome == "opened"


@dataclass(frozen=True)
class Mailbox:
    """Who we are, for loop protection: the addresses we read and send from, and the domain
    of our Message-IDs."""

    addresses: frozenset[str]
    domain: str


def take_mail(
    session: Session, mail: InboundMail, *, mailbox: Mailbox, policies: Policies
) -> Taken:
    """Store `mail` in the caller's transaction and say what became of it."""
    known = get_mail_by_message_id(session=session, message_id=mail.message_id)
    if known is not None:
        return Taken("duplicate", known.incident_id, f"taken before as {known.outcome}")
    loop = loop_reason(mail, own_addresses=set(mailbox.addresses), own_domain=mailbox.domain)
    if loop is not None:
        return _recorded(session, mail, Taken(loop, reason=_LOOP_REASONS[loop]))
    policy = policies.mail
    if _over_rate_limit(session, mail.sender, policy, clock.now()):
        reason = f"more than {policy.rate_limit.mails} mails from {mail.sender} within the limit"
        return _recorded(session, mail, Taken("rate_limited", reason=reason))
    incident = find_incident(session, mail, domain=mailbox.domain)
    if incident is not None and incident.status != IncidentStatus.closed:
        taken = _thread(session, mail, incident, policies)
    else:
        taken = _open(session, mail, policies, follows=incident)
    row = _record(session, mail, taken)
    _keep_attachments(session, mail, row, taken, policy)
    return taken


_LOOP_REASONS = {
    "own": "one of our own mails came back",
    "bounce": "a delivery report (bounce)",
    "auto_reply": "an automatic reply (Auto-Submitted / Precedence)",
}


def _over_rate_limit(session: Session, sender: str, policy: MailPolicy, now: datetime) -> bool:
    since = now - policy.rate_limit.per
    return count_mails_from(session=session, sender=sender, since=since) >= policy.rate_limit.mails


def find_incident(session: Session, mail: InboundMail, *, domain: str) -> Incident | None:
    """The incident the mail answers: by our Message-IDs it replies to, by the reporter's own
    mails it references, then by the reference in its subject (INC-000123)."""
    candidates = [parse_incident_ref(n) for n in thread_numbers(mail, own_domain=domain)]
    stored = incident_of_message_ids(session=session, message_ids=thread_ids(mail))
    if stored is not None:
        candidates.append(stored)
    candidates += [parse_incident_ref(n) for n in subject_numbers(mail)]
    for incident_id in candidates:
        incident = get_incident(session=session, incident_id=incident_id)
        if incident is not None:
            return incident
    return None


def _thread(session: Session, mail: InboundMail, incident: Incident, policies: Policies) -> Taken:
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="commented",
        actor=_actor(mail),
        message=mail.body or mail.subject,
        data={"visibility": "public", "via": "email", "message_id": mail.message_id},
    )
    incident.updated_at = clock.now()
    session.add(incident)
    from_reporter = (incident.reporter_email or "").strip().lower() == mail.sender
    if incident.status == IncidentStatus.on_hold and from_reporter:
        incident_actions.resume(
            session,
            incident,
            actor=_actor(mail),
            note=f"the reporter answered by mail ({mail.subject})"[:300],
            policies=policies,
        )
        return Taken("threaded", incident.id, "reply from the reporter", resumed=True)
    return Taken("threaded", incident.id, "reply")


def _open(
    session: Session, mail: InboundMail, policies: Policies, *, follows: Incident | None
) -> Taken:
    person = person_by_email(session=session, address=mail.sender)
    earlier = count_incidents_reported_by(session=session, address=mail.sender)
    description = mail.body
    if follows is not None:
        description = f"Follows {follows.number} (closed).\n\n{description}"[:20_000]
    new = IncidentCreate(
        title=mail.subject or "(no subject)",
        description=description,
        reporter_name=(person.name if person else mail.sender_name) or None,
        reporter_email=mail.sender,
        source=SOURCE,
        labels={"mail_message_id": mail.message_id},
    )
    incident, _ = incidents.open_incident(
        session=session, new=new, policies=policies, actor=_actor(mail)
    )
    assert incident.id is not None
    if person is not None and person.language:
        incident.language = person.language
        session.add(incident)
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="reporter",
        actor=_actor(mail),
        message=(
            f"reported by {person.name} ({person.username}), {earlier} earlier incident(s)"
            if person
            else f"reported by a new reporter, {mail.sender}, {earlier} earlier incident(s)"
        ),
        data={
            "email": mail.sender,
            "username": person.username if person else None,
            "known": person is not None,
            "earlier_incidents": earlier,
        },
    )
    return Taken("opened", incident.id, "new request")


def _actor(mail: InboundMail) -> str:
    return f"mail:{mail.sender}"[:200]


def _recorded(session: Session, mail: InboundMail, taken: Taken) -> Taken:
    _record(session, mail, taken)
    return taken


def _record(session: Session, mail: InboundMail, taken: Taken) -> MailMessage:
    row = MailMessage(
        message_id=mail.message_id[:998],
        sender=mail.sender[:320],
        subject=mail.subject,
        outcome=taken.outcome,
        reason=taken.reason,
        incident_id=taken.incident_id,
    )
    session.add(row)
    session.flush()
    return row


def _keep_attachments(
    session: Session, mail: InboundMail, row: MailMessage, taken: Taken, policy: MailPolicy
) -> None:
    """Each attachment within the size limit kept with the incident; the others recorded as
    refused, on the mail's row and the incident's timeline."""
    if not mail.attachments or taken.incident_id is None or row.id is None:
        return
    listed: list[dict[str, Any]] = []
    for attachment in mail.attachments:
        size = len(attachment.data)
        refused = (
            f"{size} bytes, over the limit of {policy.attachment_max_bytes}"
            if size > policy.attachment_max_bytes
            else None
        )
        session.add(
            MailAttachment(
                mail_id=row.id,
                incident_id=taken.incident_id,
                filename=attachment.filename,
                content_type=attachment.content_type,
                size=size,
                data=None if refused else attachment.data,
                refused=refused,
            )
        )
        listed.append({"filename": attachment.filename, "size": size, "refused": refused})
    kept = [a["filename"] for a in listed if not a["refused"]]
    refused_names = [a["filename"] for a in listed if a["refused"]]
    message = f"{len(kept)} attachment(s) kept" + (f": {', '.join(kept)}" if kept else "")
    if refused_names:
        message += f"; refused (too large): {', '.join(refused_names)}"
    add_timeline(
        session=session,
        incident_id=taken.incident_id,
        kind="attachments",
        actor=_actor(mail),
        message=message,
        data={"attachments": listed, "message_id": mail.message_id},
    )
