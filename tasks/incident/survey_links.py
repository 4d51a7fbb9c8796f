from __future__ import annotations

from prefect import task

from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import incidents
from itilflow.services.surveys import survey_token


@task(name="survey-links")
def survey_links(incident_ids: list[int]) -> dict[int, str]:
    """The signed link for each reporter; incidents with nobody or nothing to ask are left out."""
    rt = runtime()
    links: dict[int, str] = {}
    with session_scope(rt.engine) as session:
        for incident_id in incident_ids:
            incident = incidents.load_incident(session, incident_id)
            if incident.reporter_email and incident.survey_score is None:
                token = survey_token(incident_id, secret=rt.secret)
                links[incident_id] = f"{rt.settings.public_url}/surveys/{token}"
    return links
