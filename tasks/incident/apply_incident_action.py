from __future__ import annotations

from prefect import task

from itilflow.models import parse_incident_ref, session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents


@task(name="apply-incident-action")
def apply_incident_action(incident: str, action: str, note: str, actor: str) -> str:
    """The same action the API offers; a refused one fails the run with the reason."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        updated = incidents.apply_action(
            session,
            parse_incident_ref(incident),
            action,
            actor=actor,
            note=note,
            policies=rt.policies,
        )
        return f"{updated.number} is {updated.status.value}"
