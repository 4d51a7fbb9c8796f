"""The facts a change notification is given, and who receives it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from itilflow.models import Change, get_engineer
from itilflow.policies import Policies


def change_url(public_url: str, change_id: int) -> str:
    return f"{public_url}/api/changes/{change_id}"


def change_context(change: Change, *, policies: Policies, public_url: str) -> dict[str, Any]:
    assert change.id is not None
    zone = policies.change.zone

    def when(value: datetime | None) -> str | None:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else None

    return {
        "number": change.number,
        "title": change.title,
        "category": change.category,
        "status": change.status.value.replace("_", " "),
        "version": change.version,
        "risk_level": change.risk_level,
        "risk_score": change.risk_score,
        "cis": ", ".join(change.ci_names) or None,
        "planned_start": when(change.planned_start),
        "planned_end": when(change.planned_end),
        "url": change_url(public_url, change.id),
    }


def email_of(session: Session, username: str) -> str | None:
    engineer = get_engineer(session=session, username=username)
    return engineer.email if engineer else None


def approval_mail_context(
    change_context: dict[str, Any],
    change: Change,
    *,
    approver: str,
    stage: str,
    link: str,
    reminder: bool,
) -> dict[str, Any]:
    """What an approval request (or its reminder) says: the change, the stage, and the signed
    link's approve and reject addresses. An escalation contact gets the approver's own link:
    they chase, not decide."""
    return {
        "change": change_context,
        "approver": approver,
        "stage": stage,
        "approve_url": f"{link}?decision=approve",
        "reject_url": f"{link}?decision=reject",
        "reasons": "; ".join(change.risk_reasons) or "none",
        "reminder": reminder,
    }
