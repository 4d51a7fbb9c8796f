"""Who an incident's message reaches by email: the policy's audiences turned into addresses."""

from __future__ import annotations

from sqlmodel import Session

from itilflow.models import Incident, get_engineer, get_group, list_engineers


def audience_emails(session: Session, incident: Incident, audience: str) -> list[str]:
    """The addresses of one audience; "on_call" is chat only, so none. "person:USERNAME" is
    one person of the directory (a survey callback's level names whom it asks)."""
    if audience.startswith("person:"):
        named = get_engineer(session=session, username=audience.removeprefix("person:"))
        return [named.email] if named and named.email else []
    group = get_group(session=session, name=incident.group_name)
    if audience == "reporter":
        return [incident.reporter_email] if incident.reporter_email else []
    if audience == "assignee":
        engineer = get_engineer(session=session, username=incident.assignee)
        if engineer and engineer.email:
            return [engineer.email]
        audience = "group"  # nobody assigned yet: the whole group hears of it
    if audience in ("group_lead", "manager"):
        username = getattr(group, "lead" if audience == "group_lead" else "manager", None)
        person = get_engineer(session=session, username=username)
        return [person.email] if person and person.email else []
    if audience == "group":
        if group and group.email:
            return [group.email]
        members = list_engineers(session=session, group=incident.group_name)
        return sorted(e.email for e in members if e.email and e.on_duty)
    return []
