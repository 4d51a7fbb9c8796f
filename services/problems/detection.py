"""Detection: repeated incidents found by SQL aggregation; the problems opened or updated for them.

Repeated incidents are found by GROUP BY the configuration item, the category or the alert
fingerprint, HAVING COUNT >= N within the window, never by reading every incident into Python.
One problem per match key while it is not closed (a partial unique index backs this up); a
review run again links new incidents to it instead of opening another.

Each function works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import exists, func
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.models import (
    Incident,
    Problem,
    ProblemEntry,
    ProblemIncident,
    ProblemStatus,
    add_problem_entry,
    get_engineer,
    get_open_problem,
    incident_number,
)
from itilflow.policies import (
    Policies,
    ProblemPolicy,
    format_duration,
    problem_owner,
)

REVIEW_ACTOR = "flow:review-problems"
_COLUMNS = {
    "ci": Incident.ci_name,
    "category": Incident.category,
    "fingerprint": Incident.fingerprint,
}
KIND_NAMES = {"ci": "configuration item", "category": "category", "fingerprint": "alert"}

# --- detection -----------------------------------------------------------------------------------


class Cluster(BaseModel):
    """Incidents sharing one key within a rule's window, enough of them to make a problem."""

    kind: Literal["ci", "category", "fingerprint"]
    value: str
    count: int
    first_at: datetime
    last_at: datetime
    incident_ids: list[int]
    # The category most of them have, and the newest one's title (for a readable problem title).
    category: str | None
    latest_title: str
    min_incidents: int
    window: str


def _counted(policy: ProblemPolicy, kind: str, since: datetime, until: datetime) -> list[Any]:
    """The conditions an incident meets to count towards a `kind` cluster."""
    column = _COLUMNS[kind]
    # An incident already accounted for by a closed problem with the same key does not count
    # again: a problem closed today must not be opened again from last week's incidents.
    in_closed_problem = (
        exists()
        .where(
            ProblemIncident.incident_id == Incident.id,
            ProblemIncident.problem_id == Problem.id,
            Problem.match_kind == kind,
            Problem.match_value == column,
            Problem.status == ProblemStatus.closed,
        )
        .correlate(Incident)
    )
    return [
        col(column).is_not(None),
        column != "",
        col(Incident.opened_at) >= since,
        col(Incident.opened_at) <= until,
        col(Incident.status).in_(policy.statuses),
        col(Incident.parent_id).is_(None),  # survey follow-ups are not repeats
        ~in_closed_problem,
    ]


def detect_clusters(session: Session, policy: ProblemPolicy, now: datetime) -> list[Cluster]:
    """Every group of repeated incidents the enabled rules find, by kind then value."""
    clusters: list[Cluster] = []
    for kind, rule in policy.rules().items():
        column = _COLUMNS[kind]
        conditions = _counted(policy, kind, now - rule.window, now)
        count = func.count(col(Incident.id))
        groups = session.exec(
            select(column, count, func.min(Incident.opened_at), func.max(Incident.opened_at))
            .where(*conditions)
            .group_by(column)
            .having(count >= rule.min_incidents)
            .order_by(column)
        ).all()
        for value, total, first_at, last_at in groups:
            members = session.exec(
                select(Incident.id, Incident.category, Incident.title)
                .where(column == value, *conditions)
                .order_by(col(Incident.opened_at), col(Incident.id))
            ).all()
            categories = Counter(category for _, category, _ in members if category)
            category = value if kind == "category" else _most_common(categories)
            clusters.append(
                Cluster(
                    kind=kind,  # type: ignore[arg-type]
                    value=value,
                    count=total,
                    first_at=first_at,
                    last_at=last_at,
                    incident_ids=[incident_id for incident_id, _, _ in members],
                    category=category,
                    latest_title=members[-1][2],
                    min_incidents=rule.min_incidents,
                    window=format_duration(rule.window),
                )
            )
    return clusters


def _most_common(counts: Counter[str]) -> str | None:
    if not counts:
        return None
    # Ties go to the name first in alphabetical order, so a rerun chooses the same.
    return min(counts, key=lambda name: (-counts[name], name))


# --- opening and updating problems ---------------------------------------------------------------


class ProblemEvent(BaseModel):
    """Something the review did to a problem that its owner hears about (or not)."""

    problem_id: int
    event: Literal["opened", "updated", "reopened", "resolved", "closed"]
    # The timeline entry that records it: notifications are keyed on it, so sent once.
    entry_id: int
    new_incidents: list[int] = []


def _title_for(cluster: Cluster) -> str:
    if cluster.kind == "ci":
        title = f"Repeated incidents on {cluster.value}"
    elif cluster.kind == "category":
        title = f"Repeated {cluster.value} incidents"
    else:
        title = f"Repeated alert: {cluster.latest_title}"
    return title[:300]


def problem_entry(
    session: Session, problem: Problem, kind: str, actor: str, message: str, **data: Any
) -> int:
    assert problem.id is not None
    entry = add_problem_entry(
        session=session, problem_id=problem.id, kind=kind, actor=actor, message=message, data=data
    )
    session.flush()
    assert entry.id is not None
    return entry.id


def open_problem(
    session: Session, cluster: Cluster, *, policies: Policies, actor: str = REVIEW_ACTOR
) -> tuple[Problem, int]:
    """A new problem for `cluster`, with its owner; returns it and its `opened` entry's id."""
    owner = problem_owner(policies.problem, cluster.category)
    group = owner.group
    if owner.engineer:
        engineer = get_engineer(session=session, username=owner.engineer)
        group = engineer.group_name if engineer else None
    problem = Problem(
        title=_title_for(cluster),
        description=(
            f"{cluster.count} incidents with {KIND_NAMES[cluster.kind]} {cluster.value} "
            f"within {cluster.window} (at least {cluster.min_incidents} open a problem)."
        ),
        match_kind=cluster.kind,
        match_value=cluster.value,
        category=cluster.category,
        owner=owner.engineer,
        owner_group=group,
    )
    session.add(problem)
    session.flush()
    entry_id = problem_entry(
        session,
        problem,
        "opened",
        actor,
        problem.description,
        match_kind=cluster.kind,
        match_value=cluster.value,
        count=cluster.count,
        min_incidents=cluster.min_incidents,
        window=cluster.window,
    )
    who = owner.engineer or group or "nobody"
    problem_entry(
        session,
        problem,
        "assigned",
        actor,
        f"owner {who}: {owner.reason}",
        engineer=owner.engineer,
        group=group,
    )
    return problem, entry_id


def link_incidents(
    session: Session, problem: Problem, incident_ids: list[int], *, actor: str
) -> list[int]:
    """Link the incidents not linked yet; returns those, in id order."""
    assert problem.id is not None
    already = set(
        session.exec(
            select(ProblemIncident.incident_id).where(
                ProblemIncident.problem_id == problem.id,
                col(ProblemIncident.incident_id).in_(incident_ids),
            )
        )
    )
    new = sorted(set(incident_ids) - already)
    if not new:
        return []
    for incident_id in new:
        session.add(ProblemIncident(problem_id=problem.id, incident_id=incident_id))
    latest = session.exec(
        select(func.max(Incident.opened_at)).where(col(Incident.id).in_(new))
    ).one()
    if latest is not None and (
        problem.last_incident_at is None or latest > problem.last_incident_at
    ):
        problem.last_incident_at = latest
    problem.updated_at = clock.now()
    session.add(problem)
    numbers = [incident_number(i) for i in new]
    problem_entry(
        session,
        problem,
        "incidents_linked",
        actor,
        f"linked {', '.join(numbers)}",
        incidents=new,
    )
    return new


def open_or_update_problems(
    session: Session,
    clusters: list[Cluster],
    *,
    policies: Policies,
    actor: str = REVIEW_ACTOR,
) -> list[ProblemEvent]:
    """Open a problem per cluster, or link its new incidents to the one not closed yet."""
    events: list[ProblemEvent] = []
    for cluster in clusters:
        problem = get_open_problem(
            session=session, match_kind=cluster.kind, match_value=cluster.value
        )
        if problem is None:
            problem, entry_id = open_problem(session, cluster, policies=policies, actor=actor)
            assert problem.id is not None
            new = link_incidents(session, problem, cluster.incident_ids, actor=actor)
            events.append(
                ProblemEvent(
                    problem_id=problem.id, event="opened", entry_id=entry_id, new_incidents=new
                )
            )
            continue
        assert problem.id is not None
        new = link_incidents(session, problem, cluster.incident_ids, actor=actor)
        if not new:
            continue
        if problem.status == ProblemStatus.resolved and (
            recurred := _opened_after(session, new, problem.resolved_at)
        ):
            entry_id = reopen_on_recurrence(session, problem, recurred, actor=actor)
            events.append(
                ProblemEvent(
                    problem_id=problem.id, event="reopened", entry_id=entry_id, new_incidents=new
                )
            )
            continue
        entry_id = _last_entry_id(session, problem.id)
        events.append(
            ProblemEvent(
                problem_id=problem.id, event="updated", entry_id=entry_id, new_incidents=new
            )
        )
    return events


def _last_entry_id(session: Session, problem_id: int) -> int:
    entry_id = session.exec(
        select(func.max(ProblemEntry.id)).where(ProblemEntry.problem_id == problem_id)
    ).one()
    assert entry_id is not None
    return int(entry_id)


def _opened_after(session: Session, incident_ids: list[int], after: datetime | None) -> list[int]:
    if after is None or not incident_ids:
        return []
    return list(
        session.exec(
            select(Incident.id)
            .where(col(Incident.id).in_(incident_ids), col(Incident.opened_at) > after)
            .order_by(col(Incident.id))
        )
    )


def recurrences(session: Session, problem: Problem, policy: ProblemPolicy) -> list[int]:
    """Incidents with the problem's key opened since its fix went in."""
    if problem.resolved_at is None or problem.match_kind not in _COLUMNS:
        return []
    column = _COLUMNS[problem.match_kind]
    return [
        incident_id
        for incident_id in session.exec(
            select(Incident.id)
            .where(
                column == problem.match_value,
                col(Incident.opened_at) > problem.resolved_at,
                col(Incident.status).in_(policy.statuses),
                col(Incident.parent_id).is_(None),
            )
            .order_by(col(Incident.id))
        )
        if incident_id is not None
    ]


def reopen_on_recurrence(
    session: Session, problem: Problem, recurred: list[int], *, actor: str
) -> int:
    numbers = ", ".join(incident_number(i) for i in recurred)
    problem.status = ProblemStatus.investigating
    problem.resolved_at = None
    problem.updated_at = clock.now()
    session.add(problem)
    return problem_entry(
        session,
        problem,
        "reopened",
        actor,
        f"recurred after the fix: {numbers}",
        incidents=recurred,
        fix_change_id=problem.fix_change_id,
    )
