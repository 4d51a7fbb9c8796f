from __future__ import annotations

from prefect import task

from itilflow import incidents
from itilflow.gateway.surveys import survey_token
from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.tasks.notify_incident import notify


@task(name="survey-link")
def survey_link(incident_id: int) -> str | None:
    """The signed link for the reporter, or None when there is nobody or nothing to ask."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        incident = incidents.load_incident(session, incident_id)
        if not incident.reporter_email or incident.survey_score is not None:
            return None
    token = survey_token(incident_id, secret=rt.secret)
    return f"{rt.settings.public_url}/surveys/{token}"


async def send_survey(incident_id: int, resolution: int) -> None:
    url = survey_link(incident_id)
    if url is None:
        return
    await notify(
        incident_id,
        "survey_request",
        audience=["reporter"],
        key=f"survey:{resolution}",
        actor="flow:incident-resolved",
        extra={"survey_url": url},
    )
