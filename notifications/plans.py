"""What the delivery pipeline carries: a request for a message about an incident, and the plan
of one message (about an incident, a change or a problem) rendered for its recipients.

A plan is plain JSON: a task passes it to the next, and one that could not be delivered is kept,
as it is, in a `notify` trigger for the runner to deliver later. Its `key` is unique per subject
and message, and each channel's delivery is recorded on the subject's timeline under it, so that
a retried or redelivered plan sends only what has not landed yet.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from sqlmodel import Session

from itilflow.models import Incident, Subject, add_trigger, get_trigger
from itilflow.notifications.messages import RenderedMessage

CHANNELS = ("email", "chat")


class NotificationRequest(TypedDict):
    """One message a flow wants sent about one incident."""

    incident_id: int
    template: str
    audience: list[str]
    key: str  # unique per incident and message: a retried run finds it on the timeline
    actor: str
    extra: dict[str, Any]
    # The message's language when not the incident's (a reporter the directory knows).
    language: NotRequired[str | None]


def request(
    incident_id: int,
    template: str,
    *,
    audience: list[str],
    key: str,
    actor: str,
    extra: dict[str, Any] | None = None,
    language: str | None = None,
) -> NotificationRequest:
    wanted = NotificationRequest(
        incident_id=incident_id,
        template=template,
        audience=audience,
        key=key,
        actor=actor,
        extra=extra or {},
    )
    if language:
        wanted["language"] = language
    return wanted


class NotificationPlan(TypedDict):
    """One message, rendered, and who gets it on which channel."""

    subject: str  # "incident", "change" or "problem"
    subject_id: int
    number: str  # INC-000041, CHG-000003, PRB-000002: for people reading errors
    key: str
    template: str
    actor: str
    emails: list[str]
    tags: list[str]
    message: dict[str, str]  # RenderedMessage's fields
    # Files the mail carries (a report's PDF): path, filename, mime_type. By path, so that a kept
    # plan stays small; the files live in the data folder, read when the mail goes.
    attachments: NotRequired[list[dict[str, str]]]
    # Whom "on_call" reached (an incident's group with a rotation): recorded with each delivery.
    on_call: NotRequired[dict[str, str] | None]
    # Mail headers: an incident's mails carry their thread's Message-ID and References.
    headers: NotRequired[dict[str, str]]


def make_plan(subject: Subject, message: RenderedMessage, **fields: Any) -> NotificationPlan:
    """A plan of `message` about `subject`; `fields` are the plan's others (number, key,
    template, actor, emails, tags)."""
    plan = {"subject": subject.kind, "subject_id": subject.id, "message": asdict(message)}
    return NotificationPlan(**plan, **fields)  # type: ignore[typeddict-item]


def subject_of(plan: NotificationPlan | dict[str, Any]) -> Subject:
    """The plan's subject; a plan kept before changes and problems had plans names an incident
    (`incident_id`)."""
    if "subject" in plan:
        return Subject(plan["subject"], plan["subject_id"])
    return Subject("incident", plan["incident_id"])


def recipients(plan: NotificationPlan, channel: str) -> list[str]:
    return plan["emails"] if channel == "email" else plan["tags"]


def channels_left(plan: NotificationPlan, delivered: set[tuple[Subject, str, str]]) -> list[str]:
    """The plan's channels that have somebody to reach and did not deliver its key yet."""
    subject = subject_of(plan)
    return [
        channel
        for channel in CHANNELS
        if recipients(plan, channel) and (subject, plan["key"], channel) not in delivered
    ]


def keep_for_delivery(session: Session, plans: list[NotificationPlan], *, due_at: datetime) -> int:
    """Hand plans to the runner's delivery (a `notify` trigger each, as a plan the engine's
    retries could not deliver is kept) in the caller's transaction: written with the change
    they tell of, so they are never lost. Returns how many were kept (a key kept already is
    not kept twice)."""
    kept = 0
    for plan in plans:
        subject, key = subject_of(plan), f"notify:{plan['key']}"
        if get_trigger(session=session, subject=subject, key=key) is None:
            add_trigger(
                session=session,
                subject=subject,
                kind="notify",
                key=key,
                due_at=due_at,
                data={"plan": dict(plan)},
                priority=_priority_of(session, subject),
            )
            kept += 1
    return kept


def _priority_of(session: Session, subject: Subject) -> str | None:
    # A kept message about a P1 is delivered before a flood's (models/trigger.py ranks).
    if subject.kind != "incident":
        return None
    incident = session.get(Incident, subject.id)
    return incident.priority if incident else None
