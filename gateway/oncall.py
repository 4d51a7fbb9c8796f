"""On call over HTTP: who is on call for a group, its overrides, and people's shifts as iCalendar.

Every route needs the reporter role (docs/security.md's matrix: reading under /api is a
reporter's); those that act check more, in the services, and answer 403:
- `GET /api/oncall/{group}?at=`: who is on call.
- `GET|POST /api/oncall/{group}/overrides`, `DELETE .../{id}`: list; add and remove (the
  group's lead or manager, a group_lead member of it, or an admin).
- `GET /api/oncall/people/{username}.ics`: the person's shifts (themselves, an admin, or whoever
  manages one of their groups).
- `POST|DELETE /api/oncall/people/{username}/feed`: make (again) or revoke the person's secret
  feed URL (themselves or an admin), which `GET /calendars/oncall/{token}.ics` serves without a
  bearer token, for calendar apps. The rules are services/oncall_overrides.py's and
  services/oncall_feeds.py's.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlmodel import Session

from itilflow import clock, signing
from itilflow.gateway.deps import Gateway, GatewayDep, Reporter
from itilflow.models import Engineer
from itilflow.models.people import Name, Text
from itilflow.policies.oncall import MAX_YEAR, MIN_YEAR
from itilflow.services import oncall_feeds
from itilflow.services.oncall_overrides import (
    NotAllowed,
    OverrideRefused,
    add_override,
    list_overrides,
    remove_override,
    shifts_for,
    who_is_on_call,
)
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.oncall")
router = APIRouter(tags=["oncall"])
ICS = "text/calendar; charset=utf-8"
# What a feed or .ics shows when not asked otherwise: the last week and the next quarter.
DEFAULT_PAST = timedelta(days=7)
DEFAULT_DAYS = 90
# The secret feed: a calendar app syncs it as a whole, so it holds the year ahead.
FEED_DAYS = 372


# Names in paths as the directory spells them (no NUL or spaces to reach the database with).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:/\-]*$"
GroupName = Annotated[str, Path(max_length=64, pattern=NAME_PATTERN)]
Username = Annotated[str, Path(max_length=64, pattern=NAME_PATTERN)]
# A row id the database can hold (a larger number is no override, not a 500).
OverrideId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _plausible(moment: datetime) -> datetime:
    # Rotations are worked out day by day from their start: a year 9999 is nobody's shift.
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(f"expected a time between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_plausible)]


class OnCallPublic(BaseModel):
    group: str
    at: datetime
    has_rotation: bool
    username: str | None = None
    name: str | None = None
    email: str | None = None
    layer: str | None = None
    source: str | None = None  # "rotation", "policy" (oncall.yaml's override), "api:<id>"
    scheduled: str | None = None  # whom the layers name, before overrides
    problem: str | None = None


class OverrideCreate(BaseModel):
    person: Name = Field(max_length=64)
    instead_of: Name | None = Field(default=None, max_length=64)
    starts_at: Moment
    ends_at: Moment
    note: Text = Field(default="", max_length=200)


class OverridePublic(BaseModel):
    id: int
    group: str
    person: str
    instead_of: str | None
    starts_at: datetime
    ends_at: datetime
    note: str
    created_by: str
    created_at: datetime


class FeedPublic(BaseModel):
    url: str


def _override(row: Any) -> OverridePublic:
    return OverridePublic(group=row.group_name, **row.model_dump(exclude={"group_name"}))


@router.get("/api/oncall/people/{username}.ics", response_class=Response)
def person_calendar(
    username: Username,
    principal: Reporter,
    gateway: GatewayDep,
    start: Moment | None = None,
    days: Annotated[int, Query(ge=1, le=400)] = DEFAULT_DAYS,
) -> Response:
    """The person's shifts from `start` (a week ago) for `days` days, as iCalendar."""
    with Session(gateway.engine) as session:
        if not oncall_feeds.may_read_shifts(session, principal, username):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"{principal.name} may not read {username}'s shifts: that needs the person, "
                "a lead of one of their groups, or an admin",
            )
        if session.get(Engineer, username) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no person {username!r}")
        return _calendar(session, gateway, username, start, days)


def _calendar(
    session: Session, gateway: Gateway, username: str, start: datetime | None, days: int
) -> Response:
    begin = start or clock.now() - DEFAULT_PAST
    shifts = shifts_for(
        session, gateway.policies.oncall, username, begin, begin + timedelta(days=days)
    )
    body = oncall_feeds.shifts_calendar(shifts, person=username, now=clock.now())
    return Response(body, media_type=ICS, headers={"Cache-Control": "private, max-age=300"})


@router.post("/api/oncall/people/{username}/feed", response_model=FeedPublic)
def make_feed(username: Username, principal: Reporter, gateway: GatewayDep) -> FeedPublic:
    """A secret URL of the person's shifts for a calendar app; any earlier one stops working."""
    _own_or_admin(principal, username)
    with Session(gateway.engine) as session:
        person = session.get(Engineer, username)
        if person is None or not person.active:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active person {username!r}")
        token = oncall_feeds.issue_feed(
            session=session, secret=gateway.secret, username=username, by=principal.name
        )
        session.commit()
    log.info("on-call feed of %s made by %s", username, principal.name)
    return FeedPublic(url=f"{gateway.settings.public_url}/calendars/oncall/{token}.ics")


@router.delete("/api/oncall/people/{username}/feed", status_code=status.HTTP_204_NO_CONTENT)
def revoke_feed(username: Username, principal: Reporter, gateway: GatewayDep) -> Response:
    _own_or_admin(principal, username)
    with Session(gateway.engine) as session:
        if not oncall_feeds.revoke_feed(session=session, username=username):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{username} has no feed")
        session.commit()
    log.info("on-call feed of %s revoked by %s", username, principal.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/calendars/oncall/{token}.ics", response_class=Response)
def feed_calendar(token: str, gateway: GatewayDep) -> Response:
    """The secret feed: the token is the credential (signed, revocable)."""
    with Session(gateway.engine) as session:
        try:
            username = oncall_feeds.feed_owner(session=session, secret=gateway.secret, token=token)
        except signing.BadToken as exc:
            # One answer for every refusal: a guesser learns nothing about which people exist.
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such calendar") from exc
        return _calendar(session, gateway, username, None, FEED_DAYS)


def _own_or_admin(principal: Principal, username: str) -> None:
    if not (principal.has("admin") or (principal.kind == "person" and principal.name == username)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{principal.name} may not manage {username}'s calendar feed: only the person or an "
            "admin may",
        )


@router.get("/api/oncall/{group}", response_model=OnCallPublic)
def who(group: GroupName, _: Reporter, gateway: GatewayDep, at: Moment | None = None) -> Any:
    """Who is on call for `group` at `at` (now when not given)."""
    moment = at or clock.now()
    with Session(gateway.engine) as session:
        resolved = who_is_on_call(session, gateway.policies.oncall, group, moment)
    answer = OnCallPublic(group=group, at=moment, has_rotation=resolved is not None)
    if resolved is None:
        return answer
    found, person = resolved.on_call, resolved.person
    return answer.model_copy(
        update={
            "username": found.person if found else None,
            "name": person.name if person else None,
            "email": person.email if person else None,
            "layer": found.layer if found else None,
            "source": found.source if found else None,
            "scheduled": found.scheduled if found else None,
            "problem": resolved.problem,
        }
    )


@router.get("/api/oncall/{group}/overrides", response_model=list[OverridePublic])
def overrides(group: GroupName, _: Reporter, gateway: GatewayDep) -> list[OverridePublic]:
    """The overrides added through the API (oncall.yaml's own are in the file)."""
    with Session(gateway.engine) as session:
        return [_override(row) for row in list_overrides(session, group)]


@router.post(
    "/api/oncall/{group}/overrides",
    response_model=OverridePublic,
    status_code=status.HTTP_201_CREATED,
)
def create_override(
    group: GroupName, body: OverrideCreate, principal: Reporter, gateway: GatewayDep
) -> OverridePublic:
    """A swap (no `instead_of`) or a leave (`instead_of` the person away)."""
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            row = add_override(
                session=session,
                policy=gateway.policies.oncall,
                principal=principal,
                group=group,
                **body.model_dump(),
            )
        except NotAllowed as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        except OverrideRefused as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        session.commit()
    log.info("on-call override %s of %s added by %s", row.id, group, principal.name)
    return _override(row)


@router.delete(
    "/api/oncall/{group}/overrides/{override_id}", status_code=status.HTTP_204_NO_CONTENT
)
def delete_override(
    group: GroupName, override_id: OverrideId, principal: Reporter, gateway: GatewayDep
) -> Response:
    with Session(gateway.engine) as session:
        try:
            row = remove_override(
                session=session, principal=principal, group=group, override_id=override_id
            )
        except NotAllowed as exc:
            raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{group} has no override {override_id}")
        session.commit()
    log.info(
        "on-call override %s of %s (%s, %s to %s) removed by %s",
        override_id,
        group,
        row.person,
        row.starts_at.isoformat(),
        row.ends_at.isoformat(),
        principal.name,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
