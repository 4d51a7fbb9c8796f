"""Which timers an incident should have now, and bringing its stored triggers in line.

`plan_timers` is a pure function of the incident, its timeline and the policies; `sync_triggers`
writes the difference. It runs after every change of state, so a hold pauses the resolution timer,
a resume moves it, an acknowledgement stops the escalation chain and a resolution ends them all.
A timer that already fired is never planned again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    OPEN_STATUSES,
    FlowTrigger,
    Incident,
    TimelineEntry,
    add_trigger,
    get_timeline,
    list_triggers,
    rank_of,
)
from itilflow.policies import (
    CLOCK_KINDS,
    EscalationSnapshot,
    Policies,
    StatusEvent,
    compute_sla,
    escalation_schedule,
    progress_interval,
)
from itilflow.services import customer_updates

# "progress" (the assignee's reminder counted from opening) is planned no more: the customer's
# updates replaced it. It stays a kind so that rows stored before are cancelled or fired.
TIMER_KINDS = ("escalation", "response_due", "resolution_due", "customer_update", "progress")


@dataclass(frozen=True)
class PlannedTimer:
    key: str
    kind: str
    due_at: datetime
    data: dict[str, Any] = field(default_factory=dict)


def plan_timers(
    incident: Incident,
    events: list[StatusEvent],
    policies: Policies,
    fired_keys: set[str],
    now: datetime,
    *,
    last_update: datetime | None = None,
) -> list[PlannedTimer]:
    """The timers the incident should have at `now`; `last_update`: when the customer last got
    a progress update (None: not yet)."""
    if incident.status not in OPEN_STATUSES or not incident.priority:
        return []
    figures = compute_sla(events, policies.sla, incident.priority, now)
    kinds = {event.kind for event in events}
    acknowledged = "acknowledged" in kinds
    planned: list[PlannedTimer] = []

    if incident.escalation:
        snapshot = EscalationSnapshot.model_validate(incident.escalation)
        chain_stopped = snapshot.stop_when == "acknowledged" and acknowledged
        if not chain_stopped:
            for step in escalation_schedule(snapshot, incident.opened_at):
                planned.append(
                    PlannedTimer(
                        key=f"escalation:{step.step}:{step.repeat}",
                        kind="escalation",
                        due_at=step.due_at,
                        data={"step": step.step, "repeat": step.repeat, "notify": step.notify},
                    )
                )

    if figures.time_to_respond is None and figures.response_due is not None:
        planned.append(PlannedTimer("response_due", "response_due", figures.response_due))
    if not figures.paused and figures.resolution_due is not None:
        planned.append(PlannedTimer("resolution_due", "resolution_due", figures.resolution_due))

    interval = progress_interval(policies.sla, incident.priority)
    if interval and not figures.paused:
        planned.append(
            PlannedTimer(
                customer_updates.next_key(fired_keys),
                customer_updates.KIND,
                customer_updates.next_due(incident.opened_at, events, last_update, interval),
            )
        )
    return [timer for timer in planned if timer.key not in fired_keys]


def status_events(session: Session, incident_id: int) -> list[StatusEvent]:
    """The timeline entries that drive the SLA clocks, as the policies read them."""
    return clock_events(get_timeline(session=session, incident_id=incident_id))


def clock_events(entries: list[TimelineEntry]) -> list[StatusEvent]:
    return [
        StatusEvent(at=entry.at, kind=entry.kind) for entry in entries if entry.kind in CLOCK_KINDS
    ]


def sync_triggers(*, session: Session, incident: Incident, policies: Policies) -> None:
    assert incident.id is not None
    entries = get_timeline(session=session, incident_id=incident.id)
    events = clock_events(entries)
    stored = {
        trigger.key: trigger
        for trigger in list_triggers(session=session, incident_id=incident.id)
        if trigger.kind in TIMER_KINDS
    }
    fired = {key for key, trigger in stored.items() if trigger.done_at is not None}
    last_update = customer_updates.last_update_at(entries)
    timers = plan_timers(incident, events, policies, fired, clock.now(), last_update=last_update)
    planned = {timer.key: timer for timer in timers}
    now = clock.now()
    for key, trigger in stored.items():
        if not trigger.pending:
            if key in planned and trigger.cancelled_at is not None:
                _revive(trigger, planned[key])
                session.add(trigger)
            continue
        if key not in planned:
            trigger.cancelled_at = now
            session.add(trigger)
        elif trigger.due_at != planned[key].due_at:
            trigger.due_at = planned[key].due_at
            session.add(trigger)
        if trigger.pending and trigger.priority_rank != rank_of(incident.priority):
            # Reprioritised: its timers are served as the new priority's.
            trigger.priority_rank = rank_of(incident.priority)
            session.add(trigger)
    for key, timer in planned.items():
        if key not in stored:
            add_trigger(
                session=session,
                incident_id=incident.id,
                kind=timer.kind,
                key=key,
                due_at=timer.due_at,
                data=timer.data,
                priority=incident.priority,
            )
    session.flush()


def _revive(trigger: FlowTrigger, timer: PlannedTimer) -> None:
    # A timer cancelled by a hold comes back on resume, at its recomputed deadline.
    trigger.cancelled_at = None
    trigger.claimed_until = None
    trigger.due_at = timer.due_at
    trigger.data = timer.data


@dataclass(frozen=True)
class TimerSpec:
    """What a timer says (its template), how the timeline calls it, to whom (None: the person
    the escalation step names) and which SLA target it is about."""

    template: str
    timeline: str
    audience: list[str] | None = None
    target: str | None = None


# What each kind of timer says, to whom, and how the timeline calls it.
TIMER_SPECS: dict[str, TimerSpec] = {
    "escalation": TimerSpec(template="escalation", timeline="escalated"),
    "response_due": TimerSpec(
        template="sla_breach",
        timeline="sla_breached",
        audience=["assignee", "group_lead", "on_call"],
        target="response",
    ),
    "resolution_due": TimerSpec(
        template="sla_breach",
        timeline="sla_breached",
        audience=["assignee", "group_lead", "on_call"],
        target="resolution",
    ),
    "progress": TimerSpec(
        template="progress_reminder", timeline="progress_reminder", audience=["assignee"]
    ),
    # To the reporter; the assignee too when there is nothing new to say (check_sla_timers).
    "customer_update": TimerSpec(
        template="customer_update", timeline=customer_updates.KIND, audience=["reporter"]
    ),
}


def load_timer(session: Any, trigger_id: int) -> FlowTrigger:
    """A timer's trigger row; a missing one is an error (the runner claimed it)."""
    trigger = session.get(FlowTrigger, trigger_id)
    if trigger is None:
        raise LookupError(f"trigger {trigger_id} not found")
    return trigger
