"""Problem management, the same from the review flow, the API and the incident flow.

- Detection: repeated incidents are found by SQL aggregation (GROUP BY the configuration item,
  the category or the alert fingerprint, HAVING COUNT >= N within the window), never by reading
  every incident into Python.
- One problem per match key while it is not closed (a partial unique index backs this up); a
  review run again links new incidents to it instead of opening another.
- Lifecycle: open -> investigating -> known_error -> fix_in_progress -> resolved (the fix is in,
  the quiet period runs) -> closed. A new incident with the problem's key after the fix reopens it.
- A known error writes a knowledge article; new incidents are matched against known errors.

Each function works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import case, exists, func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.models import (
    NOT_CLOSED,
    Change,
    ChangeStatus,
    Incident,
    KnowledgeArticle,
    Problem,
    ProblemEntry,
    ProblemIncident,
    ProblemStatus,
    add_problem_entry,
    add_timeline,
    get_article_of,
    get_engineer,
    get_group,
    get_open_problem,
    get_problem,
    get_timeline,
    incident_number,
    list_engineers,
    parse_change_ref,
)
from itilflow.policies import (
    ROOT_CAUSE_CATEGORIES,
    Policies,
    ProblemPolicy,
    format_duration,
    problem_owner,
    quiet_until,
)


class ProblemError(ValueError):
    """An action that the problem's state or the input does not allow; nothing was changed."""


class NotFound(LookupError):
    pass


REVIEW_ACTOR = "flow:review-problems"
_COLUMNS = {
    "ci": Incident.ci_name,
    "category": Incident.category,
    "fingerprint": Incident.fingerprint,
}
_KIND_NAMES = {"ci": "configuration item", "category": "category", "fingerprint": "alert"}


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


def _entry_id(
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
            f"{cluster.count} incidents with {_KIND_NAMES[cluster.kind]} {cluster.value} "
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
    entry_id = _entry_id(
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
    _entry_id(
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
    _entry_id(
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
            entry_id = _reopen_on_recurrence(session, problem, recurred, actor=actor)
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


def _reopen_on_recurrence(
    session: Session, problem: Problem, recurred: list[int], *, actor: str
) -> int:
    numbers = ", ".join(incident_number(i) for i in recurred)
    problem.status = ProblemStatus.investigating
    problem.resolved_at = None
    problem.updated_at = clock.now()
    session.add(problem)
    return _entry_id(
        session,
        problem,
        "reopened",
        actor,
        f"recurred after the fix: {numbers}",
        incidents=recurred,
        fix_change_id=problem.fix_change_id,
    )


def review_fixes(
    session: Session, *, policies: Policies, now: datetime, actor: str = REVIEW_ACTOR
) -> list[ProblemEvent]:
    """Resolve problems whose fix succeeded, reopen fixed ones that recurred, and close the ones
    that stayed quiet for the quiet period."""
    policy = policies.problem
    events: list[ProblemEvent] = []
    fixing = session.exec(
        select(Problem)
        .join(Change, col(Change.id) == col(Problem.fix_change_id))
        .where(
            Problem.status == ProblemStatus.fix_in_progress,
            Change.status == ChangeStatus.successful,
        )
        .order_by(col(Problem.id))
    ).all()
    for problem in fixing:
        assert problem.id is not None
        entry_id = _resolve(session, problem, actor=actor, note="")
        events.append(ProblemEvent(problem_id=problem.id, event="resolved", entry_id=entry_id))
    resolved = session.exec(
        select(Problem).where(Problem.status == ProblemStatus.resolved).order_by(col(Problem.id))
    ).all()
    for problem in resolved:
        assert problem.id is not None and problem.resolved_at is not None
        recurred = recurrences(session, problem, policy)
        if recurred:
            new = link_incidents(session, problem, recurred, actor=actor)
            entry_id = _reopen_on_recurrence(session, problem, recurred, actor=actor)
            events.append(
                ProblemEvent(
                    problem_id=problem.id, event="reopened", entry_id=entry_id, new_incidents=new
                )
            )
        elif now >= quiet_until(policy, problem.resolved_at):
            entry_id = _close(session, problem, actor=actor, note="", now=now)
            events.append(ProblemEvent(problem_id=problem.id, event="closed", entry_id=entry_id))
    return events


# --- lifecycle actions ---------------------------------------------------------------------------


@dataclass
class ActionInput:
    """What an action may be given; each action reads the fields it needs."""

    note: str = ""
    whys: list[dict[str, str]] = field(default_factory=list)
    root_cause: str = ""
    root_cause_category: str | None = None
    workaround: str = ""
    symptoms: str = ""
    keywords: list[str] = field(default_factory=list)
    change: str | None = None
    engineer: str | None = None
    group: str | None = None


WORKING = (
    ProblemStatus.open,
    ProblemStatus.investigating,
    ProblemStatus.known_error,
    ProblemStatus.fix_in_progress,
)
# A problem whose fix is a change in one of these states has no fix coming.
DEAD_CHANGES = (
    ChangeStatus.rejected,
    ChangeStatus.refused,
    ChangeStatus.expired,
    ChangeStatus.cancelled,
)


def load_problem(session: Session, problem_id: int) -> Problem:
    problem = get_problem(session=session, problem_id=problem_id)
    if problem is None:
        raise NotFound(f"problem {problem_id} not found")
    return problem


def _require(problem: Problem, action: str, allowed: tuple[ProblemStatus, ...]) -> None:
    if problem.status not in allowed:
        names = ", ".join(status.value for status in allowed)
        raise ProblemError(
            f"{problem.number} is {problem.status.value}: '{action}' needs one of {names}"
        )


def _set_status(
    session: Session,
    problem: Problem,
    to: ProblemStatus,
    *,
    kind: str,
    actor: str,
    message: str,
    **data: Any,
) -> int:
    problem.status = to
    problem.updated_at = clock.now()
    session.add(problem)
    return _entry_id(session, problem, kind, actor, message, **data)


def investigate(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "investigate", (ProblemStatus.open,))
    _set_status(
        session,
        problem,
        ProblemStatus.investigating,
        kind="investigating",
        actor=actor,
        message=data.note or "investigation started",
    )


def analyse(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    """Record the 5-whys and the root cause with its category."""
    _require(problem, "analyse", WORKING)
    whys = _clean_whys(data.whys)
    if data.root_cause_category not in ROOT_CAUSE_CATEGORIES:
        raise ProblemError(
            f"root_cause_category: expected one of {', '.join(ROOT_CAUSE_CATEGORIES)}, "
            f"got {data.root_cause_category!r}"
        )
    problem.whys = whys
    problem.root_cause = data.root_cause.strip() or whys[-1]["answer"]
    problem.root_cause_category = data.root_cause_category
    if problem.status == ProblemStatus.open:
        problem.status = ProblemStatus.investigating
    problem.updated_at = clock.now()
    session.add(problem)
    _entry_id(
        session,
        problem,
        "root_cause",
        actor,
        f"{problem.root_cause_category}: {problem.root_cause}",
        whys=whys,
        root_cause=problem.root_cause,
        root_cause_category=problem.root_cause_category,
    )
    if problem.known_error:
        write_article(session, problem, data)


def _clean_whys(whys: list[dict[str, str]]) -> list[dict[str, str]]:
    if not whys:
        raise ProblemError("whys: expected at least one {why, answer} pair (the 5 whys)")
    if len(whys) > 10:
        raise ProblemError(f"whys: expected at most 10 pairs, got {len(whys)}")
    cleaned = []
    for index, pair in enumerate(whys):
        why = str(pair.get("why") or "").strip()
        answer = str(pair.get("answer") or "").strip()
        if not why or not answer:
            raise ProblemError(f"whys[{index}]: expected a non-empty 'why' and 'answer'")
        cleaned.append({"why": why, "answer": answer})
    return cleaned


def set_workaround(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "workaround", WORKING)
    if not data.workaround.strip():
        raise ProblemError("workaround: expected the steps that restore service meanwhile")
    problem.workaround = data.workaround.strip()
    problem.updated_at = clock.now()
    session.add(problem)
    _entry_id(session, problem, "workaround", actor, problem.workaround)
    if problem.known_error:
        write_article(session, problem, data)


def mark_known_error(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    """Root cause and workaround known: a known error, written up as a knowledge article."""
    _require(
        problem,
        "known_error",
        (ProblemStatus.open, ProblemStatus.investigating, ProblemStatus.known_error),
    )
    if data.workaround.strip():
        problem.workaround = data.workaround.strip()
    if not problem.root_cause_category:
        raise ProblemError(
            f"{problem.number} has no root cause yet: "
            "'analyse' it (5 whys) before it is a known error"
        )
    if not problem.workaround:
        raise ProblemError(f"{problem.number} has no workaround: give one ('workaround')")
    problem.known_error = True
    article = write_article(session, problem, data)
    _set_status(
        session,
        problem,
        ProblemStatus.known_error,
        kind="known_error",
        actor=actor,
        message=f"known error; knowledge article {article.number}",
        article_id=article.id,
    )


def link_fix(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    """The change that fixes the problem for good."""
    _require(
        problem,
        "link_fix",
        (ProblemStatus.investigating, ProblemStatus.known_error, ProblemStatus.fix_in_progress),
    )
    if not problem.root_cause_category:
        raise ProblemError(f"{problem.number} has no root cause yet: 'analyse' it before a fix")
    if not data.change:
        raise ProblemError("change: expected the fixing change, e.g. CHG-000042")
    try:
        change = session.get(Change, parse_change_ref(data.change))
    except ValueError as exc:
        raise ProblemError(str(exc)) from None
    if change is None:
        raise ProblemError(f"change {data.change} not found")
    if change.status in DEAD_CHANGES:
        raise ProblemError(f"{change.number} is {change.status.value}: it will fix nothing")
    problem.fix_change_id = change.id
    _set_status(
        session,
        problem,
        ProblemStatus.fix_in_progress,
        kind="fix_linked",
        actor=actor,
        message=data.note or f"permanent fix: {change.number} {change.title}",
        change_id=change.id,
    )


def resolve(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "resolve", (ProblemStatus.fix_in_progress,))
    change = session.get(Change, problem.fix_change_id) if problem.fix_change_id else None
    if change is None or change.status != ChangeStatus.successful:
        state = f"{change.number} is {change.status.value}" if change else "no fix is linked"
        raise ProblemError(
            f"{problem.number} is not fixed yet: {state}; 'resolve' needs a successful change"
        )
    _resolve(session, problem, actor=actor, note=data.note)


def _resolve(session: Session, problem: Problem, *, actor: str, note: str) -> int:
    change = session.get(Change, problem.fix_change_id) if problem.fix_change_id else None
    problem.resolved_at = clock.now()
    return _set_status(
        session,
        problem,
        ProblemStatus.resolved,
        kind="resolved",
        actor=actor,
        message=note or f"fix {change.number if change else '?'} is in; the quiet period starts",
        change_id=problem.fix_change_id,
    )


def close(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "close", (ProblemStatus.resolved,))
    assert problem.resolved_at is not None
    recurred = recurrences(session, problem, policies.problem)
    if recurred:
        numbers = ", ".join(incident_number(i) for i in recurred)
        raise ProblemError(f"{problem.number} recurred after the fix ({numbers}): reopen it")
    now = clock.now()
    until = quiet_until(policies.problem, problem.resolved_at)
    if now < until:
        raise ProblemError(
            f"{problem.number} is in its quiet period until {until:%Y-%m-%d %H:%M} UTC "
            f"({format_duration(policies.problem.quiet_period)} after the fix)"
        )
    _close(session, problem, actor=actor, note=data.note, now=now)


def _close(session: Session, problem: Problem, *, actor: str, note: str, now: datetime) -> int:
    problem.closed_at = now
    return _set_status(
        session,
        problem,
        ProblemStatus.closed,
        kind="closed",
        actor=actor,
        message=note or "no recurrence during the quiet period",
    )


def reopen(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "reopen", (ProblemStatus.resolved,))
    if not data.note.strip():
        raise ProblemError("reopening a problem needs a note saying why")
    problem.resolved_at = None
    _set_status(
        session,
        problem,
        ProblemStatus.investigating,
        kind="reopened",
        actor=actor,
        message=data.note,
    )


def assign(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    _require(problem, "assign", (*WORKING, ProblemStatus.resolved))
    if (data.engineer is None) == (data.group is None):
        raise ProblemError("assign: expected exactly one of 'engineer' or 'group'")
    if data.engineer is not None:
        engineer = get_engineer(session=session, username=data.engineer)
        if engineer is None:
            raise ProblemError(f"engineer: {data.engineer!r} is not known")
        problem.owner, problem.owner_group = engineer.username, engineer.group_name
    else:
        if get_group(session=session, name=data.group) is None:
            raise ProblemError(f"group: {data.group!r} is not known")
        problem.owner, problem.owner_group = None, data.group
    problem.updated_at = clock.now()
    session.add(problem)
    who = problem.owner or problem.owner_group
    _entry_id(
        session,
        problem,
        "assigned",
        actor,
        data.note or f"owner {who}",
        engineer=problem.owner,
        group=problem.owner_group,
    )


def comment(
    session: Session, problem: Problem, data: ActionInput, *, actor: str, policies: Policies
) -> None:
    if not data.note.strip():
        raise ProblemError("a comment needs text")
    _require(problem, "comment", NOT_CLOSED)
    problem.updated_at = clock.now()
    session.add(problem)
    _entry_id(session, problem, "commented", actor, data.note.strip())


ACTIONS = {
    "investigate": investigate,
    "analyse": analyse,
    "workaround": set_workaround,
    "known_error": mark_known_error,
    "link_fix": link_fix,
    "resolve": resolve,
    "close": close,
    "reopen": reopen,
    "assign": assign,
    "comment": comment,
}


def apply_action(
    session: Session,
    problem_id: int,
    action: str,
    *,
    actor: str,
    data: ActionInput,
    policies: Policies,
) -> Problem:
    """Run one named action; raises NotFound or ProblemError and then changes nothing."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise ProblemError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    problem = load_problem(session, problem_id)
    handler(session, problem, data, actor=actor, policies=policies)
    return problem


# --- knowledge -----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:[-.][^\W_]+)*", re.UNICODE)
_STOPWORDS = frozenset(
    "a an and are but for from has have into its not now of off on or our over the their them "
    "then there this that was were when with without repeated incidents incident alert".split()
)


def normalise_keywords(words: list[str]) -> str:
    """Lower-case words, each once, in the order given, separated by single spaces."""
    seen: dict[str, None] = {}
    for word in words:
        for token in _WORD.findall(word.lower()):
            seen.setdefault(token, None)
    return " ".join(seen)


def _derived_keywords(title: str, titles: list[str]) -> list[str]:
    counts: Counter[str] = Counter()
    for text in [title, *titles]:
        for token in set(_WORD.findall(text.lower())):
            if len(token) >= 4 and token not in _STOPWORDS and not token.isdigit():
                counts[token] += 1
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:8]


def _mode(session: Session, problem_id: int, column: Any) -> Any:
    row = session.exec(
        select(column, func.count())
        .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
        .where(ProblemIncident.problem_id == problem_id, col(column).is_not(None), column != "")
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(1)
    ).first()
    return row[0] if row else None


def write_article(session: Session, problem: Problem, data: ActionInput) -> KnowledgeArticle:
    """Create or bring up to date the knowledge article of a known error."""
    assert problem.id is not None
    article = get_article_of(session=session, problem_id=problem.id)
    if article is None:
        article = KnowledgeArticle(problem_id=problem.id, title=problem.title)
    titles = list(
        session.exec(
            select(Incident.title)
            .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
            .where(ProblemIncident.problem_id == problem.id)
            .order_by(col(Incident.opened_at).desc())
            .limit(20)
        )
    )
    article.title = problem.title
    if data.symptoms.strip():
        article.symptoms = data.symptoms.strip()
    elif not article.symptoms:
        article.symptoms = "\n".join(dict.fromkeys(titles[:5]))
    article.workaround = problem.workaround
    article.root_cause = problem.root_cause
    if data.keywords:
        article.keywords = normalise_keywords(data.keywords)
    elif not article.keywords:
        article.keywords = normalise_keywords(_derived_keywords(problem.title, titles))
    article.category = problem.category
    article.ci_name = (
        problem.match_value
        if problem.match_kind == "ci"
        else _mode(session, problem.id, Incident.ci_name)
    )
    article.fingerprint = (
        problem.match_value
        if problem.match_kind == "fingerprint"
        else _mode(session, problem.id, Incident.fingerprint)
    )
    article.updated_at = clock.now()
    session.add(article)
    session.flush()
    return article


def _like(column: Any, term: str) -> ColumnElement[bool]:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(func.coalesce(column, "")).like(f"%{escaped}%", escape="\\")


# Points per query word found in each field: the title and keywords weigh most.
_WEIGHTS = (
    (KnowledgeArticle.title, 3),
    (KnowledgeArticle.keywords, 3),
    (KnowledgeArticle.symptoms, 2),
    (KnowledgeArticle.workaround, 1),
    (KnowledgeArticle.root_cause, 1),
)


def search_articles(
    session: Session, query: str, *, limit: int = 20
) -> list[tuple[KnowledgeArticle, int]]:
    """Articles with any of the query's words (case-insensitive, anywhere in the title, symptoms,
    workaround, root cause or keywords), best first: points per word and field found, then the
    most recently updated. An empty query lists the latest articles."""
    terms = list(dict.fromkeys(word for word in query.lower().split() if word))[:8]
    if not terms:
        rows = session.exec(
            select(KnowledgeArticle)
            .order_by(col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id).desc())
            .limit(limit)
        ).all()
        return [(article, 0) for article in rows]
    score = reduce(
        operator.add,
        (
            case((_like(column, term[:100]), weight), else_=0)
            for term in terms
            for column, weight in _WEIGHTS
        ),
    ).label("score")
    rows = session.exec(
        select(KnowledgeArticle, score)
        .where(score > 0)
        .order_by(score.desc(), col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id))
        .limit(limit)
    ).all()
    return [(article, int(points)) for article, points in rows]


# --- known errors for new incidents --------------------------------------------------------------


def match_known_error(
    session: Session, incident: Incident, policy: ProblemPolicy
) -> tuple[KnowledgeArticle, Problem, str] | None:
    """The known error a new incident looks like, and why; None when none fits.

    Known errors of problems not closed count, strongest reason first: the same alert
    fingerprint; the same configuration item and category; then `known_error_match.keyword_hits`
    of the article's keywords (all of them if it has fewer) as words of the incident's title or
    description. Ties go to the most recently updated article.
    """
    live = (
        select(KnowledgeArticle, Problem)
        .join(Problem, col(Problem.id) == col(KnowledgeArticle.problem_id))
        .where(col(Problem.known_error).is_(True), col(Problem.status).in_(NOT_CLOSED))
    )
    newest = (col(KnowledgeArticle.updated_at).desc(), col(KnowledgeArticle.id).desc())
    if incident.fingerprint:
        row = session.exec(
            live.where(KnowledgeArticle.fingerprint == incident.fingerprint).order_by(*newest)
        ).first()
        if row:
            return row[0], row[1], "same alert fingerprint"
    if incident.ci_name and incident.category:
        row = session.exec(
            live.where(
                KnowledgeArticle.ci_name == incident.ci_name,
                KnowledgeArticle.category == incident.category,
            ).order_by(*newest)
        ).first()
        if row:
            return row[0], row[1], f"same configuration item ({incident.ci_name}) and category"
    words = set(_WORD.findall(f"{incident.title}\n{incident.description}".lower()))
    best: tuple[int, KnowledgeArticle, Problem, list[str]] | None = None
    for article, problem in session.exec(live.order_by(*newest)).all():
        keywords = article.keyword_list
        if not keywords:
            continue
        hits = [word for word in keywords if word in words]
        if len(hits) >= min(policy.known_error_match.keyword_hits, len(keywords)) and (
            best is None or len(hits) > best[0]
        ):
            best = (len(hits), article, problem, hits)
    if best is not None:
        return best[1], best[2], f"keywords {', '.join(best[3])}"
    return None


def record_known_error_match(
    session: Session, incident: Incident, policy: ProblemPolicy, *, actor: str
) -> dict[str, Any] | None:
    """Match a new incident to a known error: its workaround on the incident's timeline, the
    incident linked to the problem. Idempotent: a second call returns the first match."""
    assert incident.id is not None
    for entry in get_timeline(session=session, incident_id=incident.id):
        if entry.kind == "known_error_matched":
            return dict(entry.data.get("known_error") or {}) or None
    found = match_known_error(session, incident, policy)
    if found is None:
        return None
    article, problem, reason = found
    known_error = {
        "problem": problem.number,
        "article": article.number,
        "title": article.title,
        "workaround": article.workaround,
        "reason": reason,
    }
    add_timeline(
        session=session,
        incident_id=incident.id,
        kind="known_error_matched",
        actor=actor,
        message=(
            f"matches known error {problem.number} ({article.number}, {reason}); "
            f"workaround: {article.workaround}"
        ),
        data={"known_error": known_error},
    )
    link_incidents(session, problem, [incident.id], actor=actor)
    return known_error


# --- what notifications are told -----------------------------------------------------------------


def problem_url(public_url: str, problem_id: int) -> str:
    return f"{public_url}/api/problems/{problem_id}"


def problem_context(
    session: Session, problem: Problem, *, policies: Policies, public_url: str
) -> dict[str, Any]:
    """The `problem` mapping of the problem templates (notifications.PROBLEM_KEYS)."""
    assert problem.id is not None
    zone = policies.problem.zone

    def when(value: datetime | None) -> str | None:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else None

    linked = session.exec(
        select(Incident)
        .join(ProblemIncident, col(ProblemIncident.incident_id) == col(Incident.id))
        .where(ProblemIncident.problem_id == problem.id)
        .order_by(col(Incident.opened_at).desc(), col(Incident.id).desc())
    ).all()
    owner = get_engineer(session=session, username=problem.owner)
    return {
        "number": problem.number,
        "title": problem.title,
        "description": problem.description or None,
        "status": problem.status.value.replace("_", " "),
        "match": f"{_KIND_NAMES.get(problem.match_kind, problem.match_kind)} {problem.match_value}",
        "owner": owner.name if owner else problem.owner,
        "group": problem.owner_group,
        "incident_count": len(linked),
        # The ten newest; the count says how many there are in all.
        "incidents": [
            {"number": i.number, "title": i.title, "opened_at": when(i.opened_at)}
            for i in linked[:10]
        ],
        "workaround": problem.workaround or None,
        "url": problem_url(public_url, problem.id),
    }


def owner_emails(session: Session, problem: Problem) -> list[str]:
    """The owner's address; for a group, its address or its on-duty members'."""
    engineer = get_engineer(session=session, username=problem.owner)
    if engineer is not None and engineer.email:
        return [engineer.email]
    group = get_group(session=session, name=problem.owner_group)
    if group is not None and group.email:
        return [group.email]
    members = (
        list_engineers(session=session, group=problem.owner_group) if problem.owner_group else []
    )
    return sorted(e.email for e in members if e.email and e.on_duty)
