from __future__ import annotations

from prefect import task

from itilflow.models import IncidentCreate, session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents


@task(name="record-new-incident")
def record_new_incident(new: IncidentCreate, actor: str) -> str:
    """Store the incident and its start trigger; the runner opens it like any other."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident, _ = incidents.open_incident(
            session=session, new=new, policies=rt.policies, actor=actor
        )
        session.flush()
        return incident.number
