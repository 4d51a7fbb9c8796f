from __future__ import annotations

from prefect import task
from sqlmodel import Session

from itilflow.models import (
    Engineer,
    Incident,
    IncidentStatus,
    add_timeline,
    count_open_by_assignee,
    get_incident,
    list_engineers,
    session_scope,
)
from itilflow.policies import Assignment, Candidate, Policies, choose_assignee
from itilflow.runtime import runtime
from itilflow.services import incidents


@task(name="assign-incidents", retries=2, retry_delay_seconds=1)
def assign_incidents(incident_ids: list[int]) -> dict[int, str | None]:
    """Pick each incident's group and engineer by category, skill and load; keep an existing
    assignment. Returns incident id -> engineer (None: nobody available, the group hears)."""
    rt = runtime()
    assigned: dict[int, str | None] = {}
    with session_scope(rt.engine) as session:
        load = count_open_by_assignee(session=session)
        engineers = list_engineers(session=session)
        for incident_id in incident_ids:
            incident = incidents.load_incident(session, incident_id)
            if not incident.group_name:
                _assign(session, incident, engineers, load, rt.policies)
            assigned[incident_id] = incident.assignee
    return assigned


def _assign(
    session: Session,
    incident: Incident,
    engineers: list[Engineer],
    load: dict[str, int],
    policies: Policies,
) -> None:
    # One candidate per group an engineer works in (the primary group first); `engineers` holds
    # active engineers only: a deactivated one is never assigned.
    candidates = [
        Candidate(
            username=engineer.username,
            group=group,
            skills=frozenset(engineer.skills),
            capacity=engineer.capacity,
            on_duty=engineer.on_duty,
            open_load=load.get(engineer.username, 0),
        )
        for engineer in engineers
        for group in engineer.memberships()
    ]
    parent = get_incident(session=session, incident_id=incident.parent_id or 0)
    assignment = _follow_up_owner(parent, candidates) or choose_assignee(
        policies.assignment, incident.category, candidates
    )
    incident.group_name = assignment.group
    incident.assignee = assignment.engineer
    if incident.status == IncidentStatus.new:
        incident.status = IncidentStatus.assigned
    session.add(incident)
    if assignment.engineer:
        # The next incident of the same batch sees this one in the engineer's load.
        load[assignment.engineer] = load.get(assignment.engineer, 0) + 1
    who = assignment.engineer or "nobody available"
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="assigned",
        actor="flow:open-incident",
        message=f"{assignment.group} / {who}: {assignment.reason}",
        data={"group": assignment.group, "engineer": assignment.engineer},
    )


def _follow_up_owner(parent: object, candidates: list[Candidate]) -> Assignment | None:
    # A survey follow-up goes back to whoever handled the incident: they call the reporter first.
    owner = getattr(parent, "assignee", None)
    for candidate in candidates:
        if candidate.username == owner and candidate.on_duty:
            return Assignment(
                group=candidate.group, engineer=owner, reason="follow-up of their incident"
            )
    return None
