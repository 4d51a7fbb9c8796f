from __future__ import annotations

from prefect import task

from itilflow.models import add_timeline, session_scope
from itilflow.policies import route_notification, snapshot_escalation
from itilflow.runtime import runtime
from itilflow.services import incidents


@task(name="classify-incidents", retries=2, retry_delay_seconds=1)
def classify_incidents(incident_ids: list[int]) -> dict[int, str]:
    """Set each incident's priority and freeze its escalation chain onto it; once only.
    Returns incident id -> priority."""
    rt = runtime()
    priorities: dict[int, str] = {}
    with session_scope(rt.engine) as session:
        for incident_id in incident_ids:
            incident = incidents.load_incident(session, incident_id)
            if incident.priority and incident.escalation is not None:
                priorities[incident_id] = incident.priority
                continue
            priority = incidents.classify(incident, rt.policies)
            incident.priority = priority
            incident.escalation = snapshot_escalation(rt.policies.escalation, priority).model_dump(
                mode="json"
            )
            incident.language = route_notification(rt.policies.routing, priority, None).language
            session.add(incident)
            add_timeline(
                session=session,
                incident_id=incident_id,
                kind="classified",
                actor="flow:open-incident",
                message=f"priority {priority}",
                data={"priority": priority, "impact": incident.impact, "urgency": incident.urgency},
            )
            priorities[incident_id] = priority
    return priorities
