"""The mails the intake took from the service mailbox, and their attachments.

`MailMessage.message_id` is unique: the intake writes a message's row in the same transaction as
the incident or comment it made, so a message fetched again (the process died before it could
mark it read in the mailbox) finds its row and stores nothing twice. Ignored mails (auto-replies,
bounces, our own, over the rate limit) get a row too: what was refused, and why, is on record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, func, select

from itilflow import clock
from itilflow.models.db import UTCDateTime
from itilflow.models.incident import Incident
from itilflow.models.people import Engineer

# What became of a mail: stored on an incident, or ignored and why.
STORED_OUTCOMES = ("opened", "threaded")


class MailMessage(SQLModel, table=True):
    __tablename__ = "mail_message"
    __table_args__ = (UniqueConstraint("message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    # The Message-ID header, or "sha256:<hex>" of the raw mail when it has none.
    message_id: str = Field(max_length=998)
    sender: str = Field(default="", max_length=320, index=True)
    subject: str = Field(default="", max_length=300)
    outcome: str = Field(max_length=20)
    reason: str = ""
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    received_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)


class MailAttachment(SQLModel, table=True):
    """A file that came with a mail; `data` is None when it was refused (`refused` says why)."""

    __tablename__ = "mail_attachment"

    id: int | None = Field(default=None, primary_key=True)
    mail_id: int = Field(foreign_key="mail_message.id", index=True)
    incident_id: int | None = Field(default=None, foreign_key="incident.id", index=True)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=127)
    size: int
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    refused: str | None = None


def get_mail_by_message_id(*, session: Session, message_id: str) -> MailMessage | None:
    return session.exec(select(MailMessage).where(MailMessage.message_id == message_id)).first()


def incident_of_message_ids(*, session: Session, message_ids: list[str]) -> int | None:
    """The incident a stored mail among `message_ids` landed on (the latest such), or None."""
    if not message_ids:
        return None
    return session.exec(
        select(MailMessage.incident_id)
        .where(col(MailMessage.message_id).in_(message_ids))
        .where(col(MailMessage.incident_id).is_not(None))
        .order_by(col(MailMessage.id).desc())
    ).first()


def count_mails_from(*, session: Session, sender: str, since: datetime) -> int:
    """Mails from `sender` stored on incidents since `since` (for the per-sender rate limit)."""
    return session.exec(
        select(func.count())
        .select_from(MailMessage)
        .where(MailMessage.sender == sender)
        .where(col(MailMessage.outcome).in_(STORED_OUTCOMES))
        .where(MailMessage.received_at >= since)
    ).one()


def thread_message_ids(*, session: Session, incident_id: int) -> list[str]:
    """The reporter's mails stored on the incident, oldest first (a reply's References)."""
    return list(
        session.exec(
            select(MailMessage.message_id)
            .where(MailMessage.incident_id == incident_id)
            .where(col(MailMessage.outcome).in_(STORED_OUTCOMES))
            .where(col(MailMessage.message_id).startswith("<"))
            .order_by(col(MailMessage.id))
        )
    )


def person_by_email(*, session: Session, address: str) -> Engineer | None:
    """The active person of the directory with this address (any case), or None."""
    return session.exec(
        select(Engineer)
        .where(func.lower(Engineer.email) == address.strip().lower())
        .where(col(Engineer.active))
        .order_by(col(Engineer.username))
    ).first()


def count_incidents_reported_by(*, session: Session, address: str) -> int:
    return session.exec(
        select(func.count())
        .select_from(Incident)
        .where(func.lower(Incident.reporter_email) == address.strip().lower())
    ).one()
