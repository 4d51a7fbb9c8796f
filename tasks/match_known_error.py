from __future__ import annotations

from typing import Any

from prefect import task

from itilflow import incidents, problems
from itilflow.models import session_scope
from itilflow.runtime import runtime


@task(name="match-known-error", retries=2, retry_delay_seconds=1)
def match_known_error(incident_id: int) -> dict[str, Any] | None:
    """The known error a new incident matches: its workaround goes on the incident's timeline
    and, returned, into the assignee's notification. None when nothing matches."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident = incidents.load_incident(session, incident_id)
        return problems.record_known_error_match(
            session, incident, rt.policies.problem, actor="flow:open-incident"
        )
