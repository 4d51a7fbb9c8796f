"""On-call overrides kept in the database, who may make them, and who is on call now.

The arithmetic is services/oncall.py's; this adds the session: the API's overrides merged with
the policy's (the policy's first, so that one added later wins), and the directory, which has
the last word on a person (someone unknown or deactivated is never the one paged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.models import Engineer, Group, OnCallOverride, get_engineer
from itilflow.policies.oncall import OnCallPolicy
from itilflow.services.oncall import (
    MAX_RANGE,
    Cover,
    OnCall,
    Shift,
    on_call_at,
    person_shifts,
    policy_covers,
)
from itilflow.services.principals import Principal


class OverrideRefused(ValueError):
    """An override that cannot be made: unknown person, wrong times, unknown group."""


class NotAllowed(PermissionError):
    """The principal may not manage this group's overrides."""


@dataclass(frozen=True)
class Resolved:
    """Who is on call, with their directory row (None: the schedule names nobody usable)."""

    on_call: OnCall | None
    person: Engineer | None
    # Why nobody usable was found although the schedule names someone.
    problem: str | None = None


def may_manage(session: Session, principal: Principal, group: str) -> bool:
    """Admins manage every group's overrides; the group's lead and manager (the directory's)
    and people holding group_lead who are members of the group manage its own."""
    if principal.has("admin"):
        return True
    if principal.kind != "person":
        return False
    row = session.get(Group, group)
    if row is not None and principal.name in (row.lead, row.manager):
        return True
    return principal.has("group_lead") and group in principal.groups


def api_covers(
    session: Session, group: str, *, ending_after: datetime | None = None
) -> list[Cover]:
    """The group's overrides from the database, oldest first, as covers."""
    statement = select(OnCallOverride).where(OnCallOverride.group_name == group)
    if ending_after is not None:
        statement = statement.where(col(OnCallOverride.ends_at) > ending_after)
    rows = session.exec(statement.order_by(col(OnCallOverride.id)))
    return [_cover(row) for row in rows]


def _cover(row: OnCallOverride) -> Cover:
    return Cover(
        person=row.person,
        instead_of=row.instead_of,
        starts=row.starts_at,
        ends=row.ends_at,
        source=f"api:{row.id}",
        note=row.note,
    )


def who_is_on_call(
    session: Session, policy: OnCallPolicy, group: str | None, at: datetime
) -> Resolved | None:
    """Who is on call for `group` at `at`; None when the group has no rotation (today's
    behaviour: the on-call chat tags only)."""
    schedule = policy.groups.get(group or "")
    if schedule is None or group is None:
        return None
    covers = [*policy_covers(schedule), *api_covers(session, group, ending_after=at)]
    found = on_call_at(group, schedule, at, covers)
    if found is None:
        return Resolved(None, None, "the rotation names nobody at this time")
    person = get_engineer(session=session, username=found.person)
    if person is None or not person.active:
        state = "not in the directory" if person is None else "deactivated"
        return Resolved(found, None, f"{found.person!r} is {state}")
    return Resolved(found, person)


def shifts_for(
    session: Session, policy: OnCallPolicy, username: str, start: datetime, end: datetime
) -> list[Shift]:
    """`username`'s shifts in every group with a rotation, the API's overrides included."""
    covers = {group: api_covers(session, group, ending_after=start) for group in policy.groups}
    return person_shifts(policy, username, start, end, covers)


def add_override(
    *,
    session: Session,
    policy: OnCallPolicy,
    principal: Principal,
    group: str,
    person: str,
    starts_at: datetime,
    ends_at: datetime,
    instead_of: str | None = None,
    note: str = "",
) -> OnCallOverride:
    """Record an override of `group` by `principal` (a lead of the group or an admin)."""
    _check_allowed(session, principal, group)
    problems = _problems(session, policy, group, person, instead_of, starts_at, ends_at)
    if problems:
        raise OverrideRefused("; ".join(problems))
    row = OnCallOverride(
        group_name=group,
        person=person,
        instead_of=instead_of,
        starts_at=starts_at,
        ends_at=ends_at,
        note=note,
        created_by=principal.name,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def remove_override(
    *, session: Session, principal: Principal, group: str, override_id: int
) -> OnCallOverride | None:
    """Delete one of `group`'s overrides; None when it has no such override."""
    _check_allowed(session, principal, group)
    row = session.get(OnCallOverride, override_id)
    if row is None or row.group_name != group:
        return None
    session.delete(row)
    session.flush()
    return row


def list_overrides(session: Session, group: str) -> Sequence[OnCallOverride]:
    statement = select(OnCallOverride).where(OnCallOverride.group_name == group)
    return list(session.exec(statement.order_by(col(OnCallOverride.starts_at))))


def _check_allowed(session: Session, principal: Principal, group: str) -> None:
    if not may_manage(session, principal, group):
        raise NotAllowed(
            f"{principal.name} may not change the on-call overrides of {group}: that needs the "
            "group's lead or manager, a group_lead member of the group, or an admin"
        )


def _problems(
    session: Session,
    policy: OnCallPolicy,
    group: str,
    person: str,
    instead_of: str | None,
    starts_at: datetime,
    ends_at: datetime,
) -> list[str]:
    problems = []
    if group not in policy.groups:
        problems.append(f"group: {group!r} has no rotation in oncall.yaml")
    for field, username in (("person", person), ("instead_of", instead_of)):
        if username is None:
            continue
        row = get_engineer(session=session, username=username)
        if row is None:
            problems.append(f"{field}: {username!r} is not a person in the directory")
        elif not row.active:
            problems.append(f"{field}: {username!r} is deactivated in the directory")
    if instead_of == person:
        problems.append("instead_of: expected another person than 'person'")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        problems.append("from, to: expected times with an offset, like 2026-12-24T18:00+08:00")
    elif ends_at <= starts_at:
        problems.append("to: expected a time after 'from'")
    elif ends_at - starts_at > MAX_RANGE:
        problems.append(f"to: expected at most {MAX_RANGE.days} days after 'from'")
    return problems
