"""The survey callback in levels: starting a level, recording its outcome, lapsing its deadline.

Everything runs in the caller's transaction. A level is a `SurveyCallback` row, a timeline entry
and two durable triggers of kind `callback` (models/trigger.py): `callback:<level>:call`, due at
once, for the runner's `survey-callbacks` flow to mail the level's person through the delivery
pipeline, and `callback:<level>:due`, at the level's deadline, for the same flow to lapse the
level if nothing was recorded by then. Written with the answer or the outcome that starts the
level, so a level is never started without its mail and its deadline, even while the engine is
down. The rules of what comes next are policies/callback.py's.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col

from itilflow import clock
from itilflow.models import (
    Engineer,
    Group,
    Incident,
    SurveyCallback,
    add_timeline,
    add_trigger,
    cancel_triggers,
    get_callback,
    get_group,
)
from itilflow.policies import OUTCOMES, CallbackLevel, Policies, after_level, level_due
from itilflow.services.principals import Principal

TRIGGER_KIND = "callback"


class CallbackRefused(ValueError):
    """An outcome that cannot be recorded: no such level, already recorded, lapsed, bad value."""


def call_key(level: int) -> str:
    return f"callback:{level}:call"


def due_key(level: int) -> str:
    return f"callback:{level}:due"


def start_callback(
    session: Session, incident: Incident, *, score: int, policies: Policies
) -> SurveyCallback:
    """An unsatisfied answer (`score`) starts level 1."""
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="callback_started",
        actor="survey",
        message=f"score {score}: the reporter is called back",
        data={"score": score},
    )
    return start_level(session, incident, 1, policies=policies, actor="survey")


def start_level(
    session: Session, incident: Incident, level: int, *, policies: Policies, actor: str
) -> SurveyCallback:
    policy = policies.routing.survey.callback
    assert policy is not None and incident.id is not None
    spec = policy.levels[level - 1]
    now = clock.now()
    calendar = policies.sla.calendars[policy.calendar].calendar()
    row = SurveyCallback(
        incident_id=incident.id,
        level=level,
        who=spec.who,
        assignee=level_person(session, incident, spec),
        started_at=now,
        due_at=level_due(policy, calendar, level, now),
    )
    session.add(row)
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="callback_level_started",
        actor=actor,
        message=f"level {level} ({spec.who}): {row.assignee or 'nobody found'} calls the "
        f"reporter back by {row.due_at.isoformat()}",
        data={"level": level, "who": spec.who, "assignee": row.assignee},
    )
    for key, due_at in ((call_key(level), now), (due_key(level), row.due_at)):
        add_trigger(
            session=session,
            incident_id=incident.id,
            kind=TRIGGER_KIND,
            key=key,
            due_at=due_at,
            data={"level": level},
        )
    session.flush()
    return row


def level_person(session: Session, incident: Incident, spec: CallbackLevel) -> str | None:
    """Whom a level names: the incident's assignee, its group's lead or manager, or the expert
    (a person, or a group's lead). Nobody there (no assignee, a group without a lead): the
    incident's group lead, then its manager, so that the level has someone to answer for it."""
    group = get_group(session=session, name=incident.group_name)
    chosen = {
        "engineer": incident.assignee,
        "group_lead": group.lead if group else None,
        "manager": group.manager if group else None,
        "expert": spec.person or _lead_of(session, spec.group),
    }[spec.who]
    if chosen:
        return chosen
    return (group.lead or group.manager) if group else None


def _lead_of(session: Session, group_name: str | None) -> str | None:
    group = get_group(session=session, name=group_name)
    return (group.lead or group.manager) if group else None


def record_outcome(
    session: Session,
    incident: Incident,
    level: int,
    *,
    outcome: str,
    note: str,
    actor: str,
    policies: Policies,
) -> SurveyCallback:
    """Record a level's outcome, once; "satisfied" ends the callback, anything else starts the
    next level (or leaves it unresolved after the last). Raises CallbackRefused."""
    assert incident.id is not None
    if outcome not in OUTCOMES:
        raise CallbackRefused(f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}")
    row = get_callback(session=session, incident_id=incident.id, level=level)
    if row is None:
        raise CallbackRefused(f"{incident.number} has no callback level {level}")
    now = clock.now()
    # The conditional update is the check: two people recording at once cannot both win.
    written = session.execute(
        update(SurveyCallback)
        .where(*_still_open(row.id))
        .values(outcome=outcome, note=note, recorded_by=actor, recorded_at=now)
    ).rowcount
    if written != 1:
        session.refresh(row)
        state = f"recorded as {row.outcome}" if row.outcome else "lapsed"
        raise CallbackRefused(f"level {level} of {incident.number}'s callback is {state} already")
    session.refresh(row)
    cancel_triggers(session=session, incident_id=incident.id, keys=[due_key(level)])
    late = " (after its deadline)" if row.late else ""
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="callback_outcome",
        actor=actor,
        message=f"level {level}: {outcome.replace('_', ' ')}{late}: {note}".rstrip(": "),
        data={"level": level, "outcome": outcome, "late": row.late},
    )
    _after(session, incident, row, policies=policies, actor=actor)
    return row


def lapse_level(session: Session, incident: Incident, level: int, *, policies: Policies) -> bool:
    """A level whose deadline passed with nothing recorded lapses and the next one starts;
    False when it had ended already (recorded, or lapsed by an earlier run)."""
    assert incident.id is not None
    row = get_callback(session=session, incident_id=incident.id, level=level)
    if row is None:
        return False
    written = session.execute(
        update(SurveyCallback).where(*_still_open(row.id)).values(lapsed_at=clock.now())
    ).rowcount
    if written != 1:
        return False
    session.refresh(row)
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="callback_lapsed",
        actor="flow:survey-callbacks",
        message=f"level {level}: nothing recorded by {row.due_at.isoformat()}",
        data={"level": level, "assignee": row.assignee},
    )
    _after(session, incident, row, policies=policies, actor="flow:survey-callbacks")
    return True


def _still_open(callback_id: int | None) -> tuple[object, ...]:
    return (
        col(SurveyCallback.id) == callback_id,
        col(SurveyCallback.outcome).is_(None),
        col(SurveyCallback.lapsed_at).is_(None),
    )


def _after(
    session: Session, incident: Incident, row: SurveyCallback, *, policies: Policies, actor: str
) -> None:
    assert incident.id is not None
    policy = policies.routing.survey.callback
    following = "unresolved" if policy is None else after_level(policy, row.level, row.outcome)
    if following == "next_level":
        start_level(session, incident, row.level + 1, policies=policies, actor=actor)
        return
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind=f"callback_{following}",
        actor=actor,
        message=f"the callback ended at level {row.level}: {following}",
        data={"level": row.level},
    )


def may_record(session: Session, person: Principal, row: SurveyCallback) -> bool:
    """Only the level's person, a lead of one of their groups, or an admin records its outcome
    (a level with nobody named: the incident group's lead)."""
    if person.has("admin"):
        return True
    if person.kind != "person" or not person.has("agent"):
        return False
    if row.assignee and person.name == row.assignee:
        return True
    return person.name in leads_for(session, row)


def leads_for(session: Session, row: SurveyCallback) -> set[str]:
    engineer = session.get(Engineer, row.assignee) if row.assignee else None
    if engineer is not None:
        names = engineer.memberships()
    else:
        incident = session.get(Incident, row.incident_id)
        names = [incident.group_name] if incident and incident.group_name else []
    groups = [session.get(Group, name) for name in names]
    return {group.lead for group in groups if group is not None and group.lead}
