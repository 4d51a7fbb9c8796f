"""The satisfaction survey: its signed link, mailed on resolution, and the answer it records.

One answer per incident; a low score starts the callback in levels (services/callbacks.py) or,
where routing.yaml has no `survey.callback` and keeps `follow_up: true`, opens a follow-up
incident as before callbacks existed.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col

from itilflow import signing
from itilflow.models import Incident, IncidentCreate, add_timeline
from itilflow.policies import Policies, survey_needs_callback
from itilflow.services import callbacks, incidents

PURPOSE = "survey"
VALID_FOR = timedelta(days=14)


def survey_token(incident_id: int, *, secret: str) -> str:
    return signing.sign(
        {"incident": incident_id}, secret=secret, purpose=PURPOSE, valid_for=VALID_FOR
    )


def record_answer(
    session: Session, incident: Incident, *, score: int, comment: str, policies: Policies
) -> bool:
    """Record the answer in the caller's transaction; False (and nothing written) when the
    incident has one already."""
    assert incident.id is not None
    # One answer per incident: the conditional update is the check, so two tabs or a double
    # click cannot both record.
    result = session.execute(
        update(Incident)
        .where(col(Incident.id) == incident.id, col(Incident.survey_score).is_(None))
        .values(survey_score=score, survey_comment=comment)
    )
    if result.rowcount != 1:
        return False
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="survey_answered",
        actor="reporter",
        message=f"score {score}: {comment}",
        data={"score": score},
    )
    survey_policy = policies.routing.survey
    if survey_needs_callback(survey_policy, score):
        callbacks.start_callback(session, incident, score=score, policies=policies)
    elif survey_policy.follow_up and score <= survey_policy.low_score:
        open_follow_up(session, incident, score=score, comment=comment, policies=policies)
    return True


def open_follow_up(
    session: Session, incident: Incident, *, score: int, comment: str, policies: Policies
) -> None:
    assert incident.id is not None
    follow_up, _ = incidents.open_incident(
        session=session,
        new=IncidentCreate(
            title=f"Follow-up: reporter unsatisfied with {incident.number} (score {score})",
            description=comment,
            category=incident.category,
            ci_name=incident.ci_name,
            priority=policies.routing.survey.follow_up_priority,
            reporter_name=incident.reporter_name,
            reporter_email=incident.reporter_email,
            source="survey",
            parent_id=incident.id,
        ),
        policies=policies,
        actor="survey",
        dedup_key=f"follow-up:{incident.id}",
    )
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="follow_up_opened",
        actor="survey",
        message=f"low score {score}: {follow_up.number} opened",
        data={"follow_up": follow_up.id},
    )
