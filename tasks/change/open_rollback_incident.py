"""A change that failed opens an incident for the people who own its systems."""

from __future__ import annotations

from prefect import task

from itilflow.models import (
    IncidentCreate,
    add_change_entry,
    session_scope,
)
from itilflow.runtime import runtime
from itilflow.services import changes, incidents
from itilflow.tasks.change.record_change_outcome import summary_of


@task(name="open-rollback-incident")
def open_rollback_incident(change_id: int) -> str:
    """A failed rollback leaves a system in an unknown state: a P1 incident, opened through the
    incident process like any other."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        incident, _ = incidents.open_incident(
            session=session,
            new=IncidentCreate(
                title=f"Rollback of {change.number} failed: {change.title}"[:300],
                description=summary_of(change),
                category=rt.policies.change.rollback_failure_category,
                ci_name=change.ci_names[0] if change.ci_names else None,
                priority="P1",
                reporter_email=change.requester_email,
                source="change",
            ),
            policies=rt.policies,
            actor="flow:implement-change",
            dedup_key=f"change-rollback:{change_id}:{change.version}",
        )
        change.incident_id = incident.id
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="incident_opened",
            actor="flow:implement-change",
            message=f"{incident.number} opened (P1)",
        )
        return incident.number
