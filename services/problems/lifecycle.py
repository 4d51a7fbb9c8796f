"""A problem's lifecycle, the same from the review flow and the API.

open -> investigating -> known_error -> fix_in_progress -> resolved (the fix is in, the quiet
period runs) -> closed. A new incident with the problem's key after the fix reopens it.

Each function works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from itilflow import clock
from itilflow.models import (
    NOT_CLOSED,
    Change,
    ChangeStatus,
    Problem,
    ProblemStatus,
    get_engineer,
    get_group,
    get_problem,
    incident_number,
    parse_change_ref,
)
from itilflow.policies import (
    ROOT_CAUSE_CATEGORIES,
    Policies,
    format_duration,
    quiet_until,
)
from itilflow.services.problems.common import ActionInput, NotFound, ProblemError
from itilflow.services.problems.detection import (
    problem_entry,
    recurrences,
)
from itilflow.services.problems.knowledge import write_article

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
    return problem_entry(session, problem, kind, actor, message, **data)


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
    problem_entry(
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
    problem_entry(session, problem, "workaround", actor, problem.workaround)
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
    mark_resolved(session, problem, actor=actor, note=data.note)


def mark_resolved(session: Session, problem: Problem, *, actor: str, note: str) -> int:
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
    mark_closed(session, problem, actor=actor, note=data.note, now=now)


def mark_closed(session: Session, problem: Problem, *, actor: str, note: str, now: datetime) -> int:
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
    problem_entry(
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
    problem_entry(session, problem, "commented", actor, data.note.strip())


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
