from __future__ import annotations

from prefect import task

from itilflow import incidents
from itilflow.models import add_timeline, session_scope
from itilflow.policies import route_notification, snapshot_escalation
from itilflow.runtime import runtime


@task(name="classify-incident", retries=2, retry_delay_seconds=1)
def classify_incident(incident_id: int) -> str:
    """Set the priority and freeze the escalation chain onto the incident; once only."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident = incidents.load_incident(session, incident_id)
        if incident.priority and incident.escalation is not None:
            return incident.priority
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
    return priority
