"""Proactive notices over HTTP: list and read them; the CI's owner group (or a change manager)
accepts one, which makes a standard change request from its template for its window, or
declines it with a reason. The rules are services/proactive_decisions.py.

Plain `def` routes (the thread pool, as gateway/changes.py); the change's run is started through
the change engine once the request is committed.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlmodel import Session

from itilflow.gateway.changes import ChangeOut, _plan_errors, out, start
from itilflow.gateway.deps import Agent, ChangeEngineDep, GatewayDep
from itilflow.models import (
    Engineer,
    ProactiveNotice,
    get_proactive_timeline,
    list_notices,
    parse_proactive_ref,
)
from itilflow.models.proactive import ProactiveStatus
from itilflow.notifications.proactive_context import proactive_url
from itilflow.services import changes
from itilflow.services.principals import Principal
from itilflow.services.proactive_decisions import (
    Decider,
    NotAllowedToDecide,
    NotOpen,
    accept,
    decline,
)

router = APIRouter(prefix="/api/proactive", tags=["proactive"])


class NoticeOut(BaseModel):
    id: int
    number: str
    url: str
    ci: str
    kind: str
    item: str
    status: str
    predicted_at: datetime
    proposed_start: datetime
    proposed_end: datetime
    time_zone: str
    template: str
    parameters: dict[str, Any]
    owner_group: str | None
    customer_contact: str | None
    customer_language: str
    decided_by: str | None
    decided_at: datetime | None
    reason: str
    change_id: int | None
    created_at: datetime
    cleared_at: datetime | None


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Complete or replace the proposed parameters (e.g. one no CI attribute could fill in).
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=50)


class AcceptOut(BaseModel):
    notice: NoticeOut
    change: ChangeOut


class DeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


def notice_out(public_url: str, notice: ProactiveNotice) -> NoticeOut:
    assert notice.id is not None
    return NoticeOut(
        id=notice.id,
        number=notice.number,
        url=proactive_url(public_url, notice.id),
        ci=notice.ci_name,
        kind=notice.kind,
        item=notice.item,
        status=notice.status,
        predicted_at=notice.predicted_at,
        proposed_start=notice.proposed_start,
        proposed_end=notice.proposed_end,
        time_zone=notice.time_zone,
        template=notice.template,
        parameters=notice.parameters or {},
        owner_group=notice.owner_group,
        customer_contact=notice.customer_contact,
        customer_language=notice.customer_language,
        decided_by=notice.decided_by,
        decided_at=notice.decided_at,
        reason=notice.reason,
        change_id=notice.change_id,
        created_at=notice.created_at,
        cleared_at=notice.cleared_at,
    )


def load_notice(session: Session, ref: str) -> ProactiveNotice:
    try:
        notice = session.get(ProactiveNotice, parse_proactive_ref(ref))
    except ValueError:
        notice = None
    if notice is None:
        raise HTTPException(404, f"{ref} not found")
    return notice


def decider_of(session: Session, principal: Principal) -> Decider:
    engineer = session.get(Engineer, principal.name) if principal.kind == "person" else None
    return Decider(
        principal.name, principal.roles, principal.groups, engineer.email if engineer else None
    )


@router.get("", response_model=list[NoticeOut])
def list_proactive(
    _: Agent,
    gateway: GatewayDep,
    status_: Annotated[ProactiveStatus | None, Query(alias="status")] = None,
    ci: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NoticeOut]:
    """The newest first; `status` proposed, accepted, declined, expired, superseded or
    not_needed."""
    public_url = gateway.settings.public_url or ""
    with Session(gateway.engine) as session:
        rows = list_notices(
            session=session, status=status_.value if status_ else None, ci_name=ci, limit=limit
        )
        return [notice_out(public_url, row) for row in rows]


@router.get("/{ref}", response_model=NoticeOut)
def get_proactive(ref: str, _: Agent, gateway: GatewayDep) -> NoticeOut:
    with Session(gateway.engine) as session:
        return notice_out(gateway.settings.public_url or "", load_notice(session, ref))


@router.get("/{ref}/timeline")
def get_proactive_entries(ref: str, _: Agent, gateway: GatewayDep) -> list[dict[str, Any]]:
    with Session(gateway.engine) as session:
        notice = load_notice(session, ref)
        assert notice.id is not None
        return [
            entry.model_dump(mode="json", exclude={"proactive_id"})
            for entry in get_proactive_timeline(session=session, proactive_id=notice.id)
        ]


@router.post("/{ref}/accept", response_model=AcceptOut, status_code=201)
def accept_proactive(
    ref: str, body: AcceptIn, client: Agent, gateway: GatewayDep, change_engine: ChangeEngineDep
) -> AcceptOut:
    """A standard change request from the notice's template for its window (the next one when
    it has begun), requested by the caller: 403 unless the caller is a change manager or an
    agent of the CI's owner group (and one the template's requesters name)."""
    public_url = gateway.settings.public_url or ""
    with Session(gateway.engine, expire_on_commit=False) as session:
        notice = load_notice(session, ref)
        try:
            change = accept(
                session,
                gateway.policies,
                notice,
                decider_of(session, client),
                parameters=body.parameters,
            )
        except (NotAllowedToDecide, changes.NotAllowedToRequest) as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except NotOpen as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        except (changes.StandardChangeRefused, changes.ChangeError) as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        except ValidationError as exc:  # a plan the executors refuse
            raise HTTPException(422, _plan_errors(exc)) from exc
        session.commit()
    assert change.id is not None
    start(change_engine, change.id)
    return AcceptOut(notice=notice_out(public_url, notice), change=out(gateway, change))


@router.post("/{ref}/decline", response_model=NoticeOut)
def decline_proactive(ref: str, body: DeclineIn, client: Agent, gateway: GatewayDep) -> NoticeOut:
    """403 unless the caller is a change manager or an agent of the CI's owner group; 409 when
    it is decided or ended already."""
    with Session(gateway.engine, expire_on_commit=False) as session:
        notice = load_notice(session, ref)
        try:
            decline(session, notice, decider_of(session, client), reason=body.reason)
        except NotAllowedToDecide as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except NotOpen as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        session.commit()
    return notice_out(gateway.settings.public_url or "", notice)
