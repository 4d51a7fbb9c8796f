"""Incidents over HTTP: open (JSON), list, read, timeline, SLA figures and the actions.

Opening goes through the incident writer (gateway/writer.py): one transaction for the requests
that wait together; the rules are services/incidents.py's.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from itilflow import clock
from itilflow.gateway.deps import (
    API_PREFIX,
    Agent,
    Gateway,
    GatewayDep,
    Reporter,
    SessionDep,
    gateway_of,
)
from itilflow.gateway.reporter_mail import keep_comment_for_reporter
from itilflow.gateway.schemas import (
    MAX_OFFSET,
    clean_text,
    email_address,
    refuse_identity_claims,
)
from itilflow.models import (
    Incident,
    IncidentAction,
    IncidentCreate,
    IncidentPublic,
    get_timeline,
    incident_number,
    list_incidents,
    parse_incident_ref,
)
from itilflow.policies import compute_sla
from itilflow.services import incidents
from itilflow.services.incident_actions import comment

router = APIRouter(prefix=f"{API_PREFIX}/incidents", tags=["incidents"])


# IncidentCreate in the API's names ("ci") and with its checks; to_create() makes it one.
class IncidentIn(BaseModel):
    """A new incident. Text is stored as given and escaped wherever it is shown."""

    model_config = ConfigDict(extra="forbid", str_max_length=20_000)

    title: str = Field(min_length=1, max_length=300, examples=["Payment module returns 500"])
    description: str = Field(default="", max_length=20_000)
    category: str | None = Field(default=None, max_length=64, examples=["software"])
    ci: str | None = Field(default=None, max_length=200, examples=["shop-web-01"])
    impact: str | None = Field(default=None, max_length=32, examples=["high"])
    urgency: str | None = Field(default=None, max_length=32, examples=["high"])
    priority: str | None = Field(
        default=None, description="P1..P4; omit to derive it from impact x urgency"
    )
    reporter_name: str | None = Field(default=None, max_length=200)
    reporter_email: str | None = Field(default=None, max_length=320)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)

    @field_validator("title", "description", "category", "ci", "reporter_name")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return clean_text(value)

    @field_validator("title")
    @classmethod
    def _title_not_blank(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("reporter_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return email_address(value)

    def to_create(self) -> IncidentCreate:
        values = self.model_dump(exclude={"ci"})
        return IncidentCreate(**values, ci_name=self.ci, source="api")


# IncidentPublic under the name the API's clients know from its OpenAPI document (a docstring
# here would change the schema's description).
class IncidentOut(IncidentPublic):
    pass


class IncidentRef(BaseModel):
    id: int
    number: str
    url: str
    status: str
    created: bool


class TimelineOut(BaseModel):
    at: datetime
    actor: str
    kind: str
    message: str
    data: dict[str, Any]


class SlaOut(BaseModel):
    priority: str | None
    response_due: datetime | None
    resolution_due: datetime | None
    time_to_respond_seconds: float | None
    time_to_resolve_seconds: float | None
    time_on_hold_seconds: float
    response_breached: bool
    resolution_breached: bool
    paused: bool
    policy: str


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=20_000)
    # A comment's audience: "public" is mailed to the reporter in the incident's thread too.
    visibility: Literal["internal", "public"] = "internal"

    @model_validator(mode="before")
    @classmethod
    def _actor_is_the_principal(cls, data: Any) -> Any:
        return refuse_identity_claims(data, "actor")

    @field_validator("note")
    @classmethod
    def _no_control_characters(cls, value: str | None) -> str | None:
        return clean_text(value)


def load(session: Session, ref: str) -> Incident:
    try:
        return incidents.load_incident(session, parse_incident_ref(ref))
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except incidents.NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found") from exc


def out(gateway: Gateway, incident: Incident) -> IncidentOut:
    assert incident.id is not None
    return IncidentOut.of(incident, url=gateway.incident_url(incident.id))


@router.post(
    "",
    response_model=IncidentRef,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "an incident with this Idempotency-Key already exists"},
        503: {"description": "nothing was stored (database unavailable): resend"},
    },
)
async def create_incident(
    body: IncidentIn,
    client: Reporter,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    gateway = gateway_of(request)
    new = body.to_create()
    try:
        # Refused here, before the writer: nothing of it reaches a transaction.
        incidents.validate_new_incident(new, gateway.policies)
    except incidents.InvalidIncident as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    dedup_key = f"api:{idempotency_key}" if idempotency_key else None
    try:
        opened = await gateway.incident_writer.awrite(
            incidents.OpenRequest(new=new, actor=client.name, dedup_key=dedup_key)
        )
    except SQLAlchemyError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the incident could not be stored, nothing was: send it again",
            headers={"Retry-After": "5"},
        ) from exc
    ref = IncidentRef(
        id=opened.id,
        number=incident_number(opened.id),
        url=gateway.incident_url(opened.id),
        status=opened.status,
        created=opened.created,
    )
    return JSONResponse(ref.model_dump(), status_code=201 if opened.created else 200)


@router.get("", response_model=list[IncidentOut])
def get_incidents(
    session: SessionDep,
    _: Reporter,
    gateway: GatewayDep,
    status_filter: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[IncidentOut]:
    rows = list_incidents(session=session, status=status_filter, limit=limit, offset=offset)
    return [out(gateway, incident) for incident in rows]


@router.get("/{ref}", response_model=IncidentOut)
def get_incident(ref: str, session: SessionDep, _: Reporter, gateway: GatewayDep) -> IncidentOut:
    return out(gateway, load(session, ref))


@router.get("/{ref}/timeline", response_model=list[TimelineOut])
def get_incident_timeline(ref: str, session: SessionDep, _: Reporter) -> list[TimelineOut]:
    incident = load(session, ref)
    assert incident.id is not None
    return [
        TimelineOut(
            at=entry.at, actor=entry.actor, kind=entry.kind, message=entry.message, data=entry.data
        )
        for entry in get_timeline(session=session, incident_id=incident.id)
    ]


@router.get("/{ref}/sla", response_model=SlaOut)
def get_incident_sla(ref: str, session: SessionDep, _: Reporter, gateway: GatewayDep) -> SlaOut:
    """SLA figures recomputed from the timeline under the policy in force."""
    incident = load(session, ref)
    assert incident.id is not None
    policies = gateway.policies
    priority = incidents.classify(incident, policies)
    figures = compute_sla(
        incidents.status_events(session, incident.id), policies.sla, priority, clock.now()
    )

    def seconds(value: Any) -> float | None:
        return value.total_seconds() if value is not None else None

    return SlaOut(
        priority=priority,
        response_due=figures.response_due,
        resolution_due=figures.resolution_due,
        time_to_respond_seconds=seconds(figures.time_to_respond),
        time_to_resolve_seconds=seconds(figures.time_to_resolve),
        time_on_hold_seconds=figures.time_on_hold.total_seconds(),
        response_breached=figures.response_breached,
        resolution_breached=figures.resolution_breached,
        paused=figures.paused,
        policy=str(gateway.settings.policy_dir or "defaults"),
    )


@router.post(
    "/{ref}/{action}",
    response_model=IncidentOut,
    responses={409: {"description": "the incident's state does not allow this action"}},
)
def act_on_incident(
    ref: str,
    action: IncidentAction,
    body: ActionIn,
    session: SessionDep,
    client: Agent,
    gateway: GatewayDep,
) -> IncidentOut:
    incident = load(session, ref)
    assert incident.id is not None
    if body.visibility == "public" and action != "comment":
        raise HTTPException(422, "visibility is a comment's: only 'comment' takes it")
    try:
        if action == "comment":
            incident = comment(
                session,
                incident,
                actor=client.name,
                note=body.note,
                policies=gateway.policies,
                # An internal comment's entry stays as it was before comments had a visibility.
                visibility="public" if body.visibility == "public" else None,
            )
            if body.visibility == "public":
                keep_comment_for_reporter(
                    session, incident, note=body.note, author=client.name, gateway=gateway
                )
        else:
            incident = incidents.apply_action(
                session,
                incident.id,
                action,
                actor=client.name,
                note=body.note,
                policies=gateway.policies,
            )
        session.commit()
    except incidents.ActionError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return out(gateway, incident)
