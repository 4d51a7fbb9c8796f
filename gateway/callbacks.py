"""Survey callbacks over HTTP: an incident's levels, and a level's outcome recorded.

Reading needs the reporter role, as every read of the API (the timeline shows the same steps).
Recording needs the agent role, and more: only the level's person, a lead
of one of their groups, or an admin (services/callbacks.py `may_record`); anyone else gets 403
and nothing is written. The rules and what follows an outcome are services/callbacks.py's.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from itilflow.gateway.deps import API_PREFIX, Agent, GatewayDep, Reporter, SessionDep
from itilflow.gateway.incidents import load
from itilflow.gateway.schemas import clean_text
from itilflow.models import SurveyCallback, get_callback, list_callbacks
from itilflow.services import callbacks

log = logging.getLogger("itilflow.gateway.callbacks")

router = APIRouter(prefix=f"{API_PREFIX}/incidents", tags=["callbacks"])
# A level number the database can hold (SQLite integers are 64-bit: 2**70 would be a 500);
# policies have at most 9 levels.
MAX_LEVEL = 99


class CallbackOut(BaseModel):
    level: int
    who: str
    assignee: str | None
    started_at: datetime
    due_at: datetime
    outcome: str | None
    note: str
    recorded_by: str | None
    recorded_at: datetime | None
    lapsed_at: datetime | None
    late: bool

    @classmethod
    def of(cls, row: SurveyCallback) -> CallbackOut:
        fields = row.model_dump(exclude={"id", "incident_id"})
        return cls(**fields, late=row.late)


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["satisfied", "not_satisfied", "unreachable"]
    note: str = Field(default="", max_length=4000)

    @field_validator("note")
    @classmethod
    def _clean(cls, value: str) -> str:
        return clean_text(value) or ""


@router.get("/{ref}/callbacks", response_model=list[CallbackOut])
def get_callbacks(ref: str, session: SessionDep, _: Reporter) -> list[CallbackOut]:
    incident = load(session, ref)
    assert incident.id is not None
    return [CallbackOut.of(row) for row in list_callbacks(session=session, incident_id=incident.id)]


@router.post(
    "/{ref}/callbacks/{level}",
    response_model=CallbackOut,
    responses={
        403: {"description": "only the level's person, their group lead or an admin"},
        409: {"description": "the level's outcome is recorded already, or it lapsed"},
    },
)
def record_callback_outcome(
    ref: str,
    level: Annotated[int, Path(ge=1, le=MAX_LEVEL)],
    body: OutcomeIn,
    session: SessionDep,
    client: Agent,
    gateway: GatewayDep,
) -> CallbackOut:
    incident = load(session, ref)
    assert incident.id is not None
    row = get_callback(session=session, incident_id=incident.id, level=level)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{incident.number} has no level {level}")
    if not callbacks.may_record(session, client, row):
        log.warning("%s may not record level %d of %s: refused", client.name, level, ref)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only {row.assignee or 'the level person'}, their group lead or an admin records "
            f"level {level}; {client.name} may not",
        )
    try:
        row = callbacks.record_outcome(
            session,
            incident,
            level,
            outcome=body.outcome,
            note=body.note,
            actor=client.name,
            policies=gateway.policies,
        )
        session.commit()
    except callbacks.CallbackRefused as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return CallbackOut.of(row)
