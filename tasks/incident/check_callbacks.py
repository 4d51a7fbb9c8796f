"""The survey callbacks' triggers that came due: a level's call to mail, a deadline to lapse."""

from __future__ import annotations

from typing import Any

from prefect import task

from itilflow.models import get_callback, session_scope
from itilflow.notifications import incident_context as messages
from itilflow.notifications.plans import NotificationRequest, request
from itilflow.runtime import runtime
from itilflow.services import callbacks, incidents
from itilflow.services.sla_timers import load_timer

ACTOR = "flow:survey-callbacks"


@task(name="check-callbacks", retries=2, retry_delay_seconds=1)
def check_callbacks(trigger_ids: list[int]) -> list[NotificationRequest]:
    """Lapse each due level that has no outcome (starting the next one, whose call comes due at
    once), and say which calls to mail: a level that ended before its mail went out is not
    mailed."""
    rt = runtime()
    calls: list[NotificationRequest] = []
    with session_scope(rt.engine) as session:
        for trigger_id in trigger_ids:
            trigger = load_timer(session, trigger_id)
            if trigger.done_at is not None or trigger.cancelled_at is not None:
                continue
            incident = incidents.load_incident(session, trigger.incident_id)
            level = int(trigger.data["level"])
            if trigger.key == callbacks.due_key(level):
                callbacks.lapse_level(session, incident, level, policies=rt.policies)
            elif (call := _call(session, rt, incident, level)) is not None:
                calls.append(call)
    return calls


def _call(session: Any, rt: Any, incident: Any, level: int) -> NotificationRequest | None:
    row = get_callback(session=session, incident_id=incident.id, level=level)
    if row is None or not row.is_open or not row.assignee:
        return None
    policy = rt.policies.routing.survey.callback
    earlier = get_callback(session=session, incident_id=incident.id, level=level - 1)
    return request(
        incident.id,
        "callback_request",
        audience=[f"person:{row.assignee}"],
        key=f"callback:{level}",
        actor=ACTOR,
        extra={
            "level": level,
            "levels": len(policy.levels) if policy else level,
            "due_at": messages.when(row.due_at, rt.policies, incident.priority),
            "score": incident.survey_score,
            "comment": incident.survey_comment or None,
            "previous": _previous(earlier),
        },
    )


def _previous(earlier: Any) -> str | None:
    """What the level before ended with, for the next person to read first."""
    if earlier is None:
        return None
    if earlier.outcome is None:
        return f"level {earlier.level} ({earlier.assignee}): nothing recorded by the deadline"
    said = f": {earlier.note}" if earlier.note else ""
    return f"level {earlier.level} ({earlier.assignee}): {earlier.outcome.replace('_', ' ')}{said}"
