"""What a proactive notice's mails are told: its link, the message context, the owner group's
addresses."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session

from itilflow.models import ProactiveNotice, get_group, list_engineers, proactive_number


def proactive_url(public_url: str, notice_id: int) -> str:
    """The notice's page in the console (gateway/console/proactive.py)."""
    return f"{public_url}/proactive/{proactive_number(notice_id)}"


def proactive_context(
    notice: ProactiveNotice, *, public_url: str, missing: list[str]
) -> dict[str, Any]:
    """The `proactive` mapping of the proactive templates (notifications.PROACTIVE_KEYS); times
    in the notice's zone (the CI's, or change.yaml's). `missing`: the template's parameters
    still to give when accepting."""
    assert notice.id is not None
    zone = ZoneInfo(notice.time_zone)

    def when(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return {
        "number": notice.number,
        "ci": notice.ci_name,
        "kind": notice.kind,
        "item": notice.item,
        "predicted_at": when(notice.predicted_at),
        "window_start": when(notice.proposed_start),
        "window_end": when(notice.proposed_end),
        "time_zone": notice.time_zone,
        "template": notice.template,
        "parameters": dict(notice.parameters or {}),
        "missing": missing,
        "owner_group": notice.owner_group,
        "url": proactive_url(public_url, notice.id),
    }


def group_emails(session: Session, group_name: str | None) -> list[str]:
    """The group's address, or its on-duty members' when it has none."""
    if not group_name:
        return []
    group = get_group(session=session, name=group_name)
    if group is not None and group.email:
        return [group.email]
    members = list_engineers(session=session, group=group_name)
    return sorted(e.email for e in members if e.email and e.on_duty)
