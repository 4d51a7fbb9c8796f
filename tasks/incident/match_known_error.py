from __future__ import annotations

from typing import Any

from prefect import task

from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents, problems


@task(name="match-known-errors", retries=2, retry_delay_seconds=1)
def match_known_errors(incident_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The known error each new incident matches: its workaround goes on the incident's timeline
    and, returned, into the assignee's notification. Incidents that match none are left out."""
    rt = runtime()
    matches: dict[int, dict[str, Any]] = {}
    with session_scope(rt.engine) as session:
        for incident_id in incident_ids:
            incident = incidents.load_incident(session, incident_id)
            match = problems.record_known_error_match(
                session, incident, rt.policies.problem, actor="flow:open-incident"
            )
            if match is not None:
                matches[incident_id] = match
    return matches
