"""What can happen to an incident, the same from the API, the Prefect UI and the flows.

Opening one or many incidents stores them with the trigger that starts their flow; the actions
on an open one are in services/incident_actions.py, run by name with `apply_action`. All of it
works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    FlowTrigger,
    Incident,
    IncidentCreate,
    IncidentStatus,
    add_timeline,
    add_trigger,
    get_incident,
    get_incident_by_dedup_key,
    rank_of,
)
from itilflow.models.incident import (
    incident_ids_by_dedup_key,
    insert_incident_rows,
    insert_timeline_rows,
)
from itilflow.policies import Policies, decide_priority
from itilflow.services.incident_actions import ACTIONS, ActionError

# Read as incidents.status_events by the gateway's SLA view and the message context.
from itilflow.services.sla_timers import status_events  # noqa: F401

_INSERT_TRIGGER = insert(FlowTrigger.__table__)  # type: ignore[attr-defined]


class InvalidIncident(ValueError):
    """A new incident with values the policies do not know; nothing was stored."""


class NotFound(LookupError):
    pass


def validate_new_incident(new: IncidentCreate, policies: Policies) -> None:
    """Refuse values the policies do not know before anything is stored."""
    if new.priority is not None and new.priority not in ("P1", "P2", "P3", "P4"):
        raise InvalidIncident(f"unknown priority {new.priority!r}: expected one of P1, P2, P3, P4")
    impacts = policies.priority.impacts
    urgencies = policies.priority.urgencies
    if new.impact is not None and new.impact not in impacts:
        raise InvalidIncident(
            f"unknown impact {new.impact!r}: expected one of {', '.join(impacts)}"
        )
    if new.urgency is not None and new.urgency not in urgencies:
        raise InvalidIncident(
            f"unknown urgency {new.urgency!r}: expected one of {', '.join(urgencies)}"
        )


def open_incident(
    *,
    session: Session,
    new: IncidentCreate,
    policies: Policies,
    actor: str,
    dedup_key: str | None = None,
) -> tuple[Incident, bool]:
    """Store a new incident and the trigger that starts its flow. Returns (incident, created);
    a known dedup key returns the existing incident and stores nothing new."""
    validate_new_incident(new, policies)
    if dedup_key:
        existing = get_incident_by_dedup_key(session=session, dedup_key=dedup_key)
        if existing is not None:
            return existing, False
    incident = Incident(**new.row(), dedup_key=dedup_key)
    session.add(incident)
    session.flush()
    assert incident.id is not None
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="opened",
        actor=actor,
        message=f"opened from {new.source}",
        data={"source": new.source, "dedup_key": dedup_key},
    )
    # Ranked at intake by the priority classification will give it (a pure function of what
    # the incident says), so that a P1 is opened before a flood of P4s due earlier.
    add_trigger(
        session=session,
        incident_id=incident.id,
        kind="open",
        key="open",
        due_at=clock.now(),
        priority=classify(incident, policies),
    )
    return incident, True


def open_incidents(
    *,
    session: Session,
    new: Sequence[IncidentCreate],
    dedup_keys: Sequence[str | None],
    policies: Policies,
    actor: str,
) -> list[int]:
    """Store many new incidents, each with its `opened` entry and the trigger that starts its
    flow, in three Core INSERTs whatever their number (no ORM objects: they cost more than the
    database work). Returns their ids in order. The caller has looked up the dedup keys
    (`incident_ids_by_dedup_key`); a key another transaction stored meanwhile raises
    IntegrityError from the unique constraint, and the caller looks again."""
    for incident in new:
        validate_new_incident(incident, policies)
    now = clock.now()
    incident_rows = [
        {
            **incident.row(),
            "status": IncidentStatus.new,
            "dedup_key": key,
            "opened_at": now,
            "updated_at": now,
        }
        for incident, key in zip(new, dedup_keys, strict=True)
    ]
    ids = insert_incident_rows(session=session, rows=incident_rows)
    insert_timeline_rows(
        session=session,
        rows=[
            {
                "incident_id": incident_id,
                "at": now,
                "actor": actor,
                "kind": "opened",
                "message": f"opened from {incident.source}",
                "data": {"source": incident.source, "dedup_key": key},
            }
            for incident_id, incident, key in zip(ids, new, dedup_keys, strict=True)
        ],
    )
    # The same row add_trigger() writes: the runner claims it as it claims any other.
    session.connection().execute(
        _INSERT_TRIGGER,
        [
            {
                "incident_id": incident_id,
                "kind": "open",
                "key": "open",
                "due_at": now,
                "priority_rank": rank_of(classify(incident, policies)),
                "data": {},
                "created_at": now,
                "attempts": 0,
            }
            for incident_id, incident in zip(ids, new, strict=True)
        ],
    )
    return ids


@dataclass(frozen=True)
class OpenRequest:
    """One request to open an incident, as the JSON API receives it."""

    new: IncidentCreate
    actor: str
    dedup_key: str | None = None


@dataclass(frozen=True)
class Opened:
    id: int
    status: str
    created: bool


def open_requested_incidents(
    *, session: Session, requests: Sequence[OpenRequest], policies: Policies
) -> list[Opened]:
    """Open the incidents of several requests together (one lookup of their dedup keys, bulk
    inserts), in order. A dedup key stored before, or earlier in `requests`, returns that
    incident and stores nothing new."""
    known = incident_ids_by_dedup_key(
        session=session, dedup_keys=[r.dedup_key for r in requests if r.dedup_key]
    )
    results: dict[int, Opened] = {}
    opened_by: dict[str, int] = {}  # dedup key -> index of the request that opens it
    repeats: dict[int, str] = {}
    to_open: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        key = request.dedup_key
        if key and key in known:
            incident = load_incident(session, known[key])
            results[index] = Opened(known[key], incident.status.value, created=False)
        elif key and key in opened_by:
            repeats[index] = key
        else:
            to_open.setdefault(request.actor, []).append(index)
            if key:
                opened_by[key] = index
    for actor, indexes in to_open.items():
        ids = open_incidents(
            session=session,
            new=[requests[i].new for i in indexes],
            dedup_keys=[requests[i].dedup_key for i in indexes],
            policies=policies,
            actor=actor,
        )
        for index, incident_id in zip(indexes, ids, strict=True):
            results[index] = Opened(incident_id, IncidentStatus.new.value, created=True)
    for index, key in repeats.items():
        results[index] = Opened(results[opened_by[key]].id, IncidentStatus.new.value, False)
    return [results[index] for index in range(len(requests))]


def classify(incident: Incident | IncidentCreate, policies: Policies) -> str:
    """The incident's priority: as given, or from the impact x urgency matrix (known at intake
    already: the open trigger is ranked by it)."""
    if incident.priority:
        return incident.priority
    impact = incident.impact or policies.priority.default_impact
    urgency = incident.urgency or policies.priority.default_urgency
    return decide_priority(policies.priority, impact, urgency)


def load_incident(session: Session, incident_id: int) -> Incident:
    incident = get_incident(session=session, incident_id=incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    return incident


def apply_action(
    session: Session,
    incident_id: int,
    action: str,
    *,
    actor: str,
    note: str,
    policies: Policies,
) -> Incident:
    """Run one named action; raises NotFound or ActionError and then changes nothing."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise ActionError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    incident = load_incident(session, incident_id)
    return handler(session, incident, actor=actor, note=note, policies=policies)
