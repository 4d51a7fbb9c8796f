"""The incident queues (/incidents): mine, my groups', unassigned, breaching soon, all open;
filters by status and priority, a search by number or title, and each queue's count.

A person who only reports incidents (no agent role) sees the incidents they reported.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.gateway.console.base import language, render, signed_in_with
from itilflow.gateway.console.incident_view import may_work
from itilflow.gateway.deps import gateway_of
from itilflow.models import (
    OPEN_STATUSES,
    Engineer,
    FlowTrigger,
    Incident,
    IncidentStatus,
    parse_incident_ref,
)
from itilflow.services.principals import Principal

router = APIRouter(tags=["console"], include_in_schema=False)

QUEUES = ("mine", "group", "unassigned", "breaching", "all")
PRIORITIES = ("P1", "P2", "P3", "P4")
# "Breaching soon": a response or resolution deadline within this, or already past.
BREACHING_WITHIN = timedelta(hours=1)
SLA_KINDS = ("response_due", "resolution_due")
SHOWN = 100


def _pending_sla() -> list[Any]:
    """An SLA deadline's trigger that has neither fired nor been cancelled."""
    return [
        col(FlowTrigger.kind).in_(SLA_KINDS),
        col(FlowTrigger.done_at).is_(None),
        col(FlowTrigger.cancelled_at).is_(None),
    ]


def _queue_filter(queue: str, person: Principal, email: str | None) -> list[Any]:
    if queue == "reported":
        return [func.lower(col(Incident.reporter_email)) == (email or "").lower()]
    if queue == "mine":
        return [col(Incident.assignee) == person.name]
    if queue == "group":
        return [col(Incident.group_name).in_(sorted(person.groups))]
    if queue == "unassigned":
        return [col(Incident.assignee).is_(None)]
    if queue == "breaching":
        soon = clock.now() + BREACHING_WITHIN
        due_soon = select(FlowTrigger.incident_id).where(
            *_pending_sla(), col(FlowTrigger.due_at) <= soon
        )
        return [col(Incident.id).in_(due_soon)]
    return []


def _search_filter(text: str) -> list[Any]:
    if not text:
        return []
    try:
        return [col(Incident.id) == parse_incident_ref(text)]
    except ValueError:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return [col(Incident.title).ilike(f"%{escaped}%", escape="\\")]


def _status_filter(status: str, queue: str) -> list[Any]:
    """The status asked for; else the open ones (a reporter's own list: all of theirs)."""
    if status in IncidentStatus.__members__:
        return [col(Incident.status) == IncidentStatus(status)]
    return [] if queue == "reported" else [col(Incident.status).in_(OPEN_STATUSES)]


def _next_due(session: Session, ids: list[int]) -> dict[int, datetime]:
    """Each listed incident's nearest pending SLA deadline."""
    if not ids:
        return {}
    rows = session.exec(
        select(FlowTrigger.incident_id, func.min(FlowTrigger.due_at))
        .where(col(FlowTrigger.incident_id).in_(ids))
        .where(*_pending_sla())
        .group_by(col(FlowTrigger.incident_id))
    ).all()
    return {incident_id: due for incident_id, due in rows if incident_id is not None}


def _email_of(session: Session, person: Principal) -> str | None:
    engineer = session.get(Engineer, person.name)
    return engineer.email if engineer else None


def _count(session: Session, filters: list[Any]) -> int:
    return session.exec(select(func.count()).select_from(Incident).where(*filters)).one()


@router.get("/incidents", response_class=HTMLResponse)
def queues_page(
    request: Request,
    queue: str = "mine",
    status: str = "",
    priority: str = "",
    q: str = "",
) -> Response:
    person = signed_in_with(request, "reporter")
    if isinstance(person, Response):
        return person
    lang = language(request, person)  # before the session below: SQLite has one writer
    queues = QUEUES if may_work(person) else ("reported",)
    queue = queue if queue in queues else queues[0]
    q = q.strip()[:200]
    with Session(gateway_of(request).engine) as session:
        email = _email_of(session, person)
        counts = {
            name: _count(session, _status_filter("", name) + _queue_filter(name, person, email))
            for name in queues
        }
        filters = _queue_filter(queue, person, email) + _status_filter(status, queue)
        filters += _search_filter(q)
        if priority in PRIORITIES:
            filters.append(col(Incident.priority) == priority)
        total = _count(session, filters)
        rows = list(
            session.exec(
                select(Incident)
                .where(*filters)
                .order_by(
                    col(Incident.priority).is_(None),
                    col(Incident.priority),
                    col(Incident.opened_at),
                )
                .limit(SHOWN)
            )
        )
        due = _next_due(session, [row.id for row in rows if row.id is not None])
    return render(
        request,
        person,
        "queues.html",
        lang=lang,
        queue=queue,
        queues=queues,
        counts=counts,
        rows=rows,
        due={key: value.strftime("%Y-%m-%d %H:%M UTC") for key, value in due.items()},
        now=clock.now(),
        total=total,
        filters={"status": status, "priority": priority, "q": q},
        statuses=[status.value for status in IncidentStatus],
        priorities=PRIORITIES,
    )
