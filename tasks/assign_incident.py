from __future__ import annotations

from prefect import task

from itilflow import incidents
from itilflow.models import (
    IncidentStatus,
    add_timeline,
    count_open_by_assignee,
    get_incident,
    list_engineers,
    session_scope,
)
from itilflow.policies import Assignment, Candidate, choose_assignee
from itilflow.runtime import runtime


@task(name="assign-incident", retries=2, retry_delay_seconds=1)
def assign_incident(incident_id: int) -> dict[str, str | None]:
    """Pick the group and engineer by category, skill and load; keep an existing assignment."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident = incidents.load_incident(session, incident_id)
        if incident.group_name:
            return {"group": incident.group_name, "engineer": incident.assignee}
        load = count_open_by_assignee(session=session)
        candidates = [
            Candidate(
                username=engineer.username,
                group=engineer.group_name,
                skills=frozenset(engineer.skills),
                capacity=engineer.capacity,
                on_duty=engineer.on_duty,
                open_load=load.get(engineer.username, 0),
            )
            for engineer in list_engineers(session=session)
        ]
        parent = get_incident(session=session, incident_id=incident.parent_id or 0)
        assignment = _follow_up_owner(parent, candidates) or choose_assignee(
            rt.policies.assignment, incident.category, candidates
        )
        incident.group_name = assignment.group
        incident.assignee = assignment.engineer
        if incident.status == IncidentStatus.new:
            incident.status = IncidentStatus.assigned
        session.add(incident)
        who = assignment.engineer or "nobody available"
        add_timeline(
            session=session,
            incident_id=incident_id,
            kind="assigned",
            actor="flow:open-incident",
            message=f"{assignment.group} / {who}: {assignment.reason}",
            data={"group": assignment.group, "engineer": assignment.engineer},
        )
        return {"group": assignment.group, "engineer": assignment.engineer}


def _follow_up_owner(parent: object, candidates: list[Candidate]) -> Assignment | None:
    # A survey follow-up goes back to whoever handled the incident: they call the reporter first.
    owner = getattr(parent, "assignee", None)
    for candidate in candidates:
        if candidate.username == owner and candidate.on_duty:
            return Assignment(
                group=candidate.group, engineer=owner, reason="follow-up of their incident"
            )
    return None
