"""What a problem's notifications are told: its link, the message context, the owners' addresses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from itilflow.models import (
    Incident,
    Problem,
    ProblemIncident,
    get_engineer,
    get_group,
    list_engineers,
    problem_number,
)
from itilflow.policies import (
    Policies,
)
from itilflow.services.problems.detection import KIND_NAMES

# --- what notifications are told -----------------------------------------------------------------


def problem_url(public_url: str, problem_id: int) -> str:
    """The problem's page in the console (gateway/console/problems.py), which a browser opens."""
    return f"{public_url}/problems/{problem_number(problem_id)}"


def problem_context(
    session: Session, problem: Problem, *, policies: Policies, public_url: str
) -> dict[str, Any]:
    """The `problem` mapping of the problem templates (notifications.PROBLEM_KEYS)."""
    assert problem.id is not None
    zone = policies.problem.zone

    def when(value: datetime | None) -> str | None:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else None

    linked = session.exec(
        select(Incident)
        .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
        .where(ProblemIncident.problem_id == problem.id)
        .order_by(col(Incident.opened_at).desc(), col(Incident.id).desc())
    ).all()
    owner = get_engineer(session=session, username=problem.owner)
    return {
        "number": problem.number,
        "title": problem.title,
        "description": problem.description or None,
        "status": problem.status.value.replace("_", " "),
        "match": f"{KIND_NAMES.get(problem.match_kind, problem.match_kind)} {problem.match_value}",
        "owner": owner.name if owner else problem.owner,
        "group": problem.owner_group,
        "incident_count": len(linked),
        # The ten newest; the count says how many there are in all.
        "incidents": [
            {"number": i.number, "title": i.title, "opened_at": when(i.opened_at)}
            for i in linked[:10]
        ],
        "workaround": problem.workaround or None,
        "url": problem_url(public_url, problem.id),
    }


def owner_emails(session: Session, problem: Problem) -> list[str]:
    """The owner's address; for a group, its address or its on-duty members'."""
    engineer = get_engineer(session=session, username=problem.owner)
    if engineer is not None and engineer.email:
        return [engineer.email]
    group = get_group(session=session, name=problem.owner_group)
    if group is not None and group.email:
        return [group.email]
    members = (
        list_engineers(session=session, group=problem.owner_group) if problem.owner_group else []
    )
    return sorted(e.email for e in members if e.email and e.on_duty)
