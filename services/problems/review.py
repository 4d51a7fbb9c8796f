"""The daily review of problems with a fix: resolve the ones whose change succeeded, reopen fixed
ones that recurred, close the ones that stayed quiet for the quiet period.

It works in the caller's transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from itilflow.models import Change, ChangeStatus, Problem, ProblemStatus
from itilflow.policies import Policies, quiet_until
from itilflow.services.problems.detection import (
    REVIEW_ACTOR,
    ProblemEvent,
    link_incidents,
    recurrences,
    reopen_on_recurrence,
)
from itilflow.services.problems.lifecycle import mark_closed, mark_resolved


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
        entry_id = mark_resolved(session, problem, actor=actor, note="")
        events.append(ProblemEvent(problem_id=problem.id, event="resolved", entry_id=entry_id))
    resolved = session.exec(
        select(Problem).where(Problem.status == ProblemStatus.resolved).order_by(col(Problem.id))
    ).all()
    for problem in resolved:
        assert problem.id is not None and problem.resolved_at is not None
        recurred = recurrences(session, problem, policy)
        if recurred:
            new = link_incidents(session, problem, recurred, actor=actor)
            entry_id = reopen_on_recurrence(session, problem, recurred, actor=actor)
            events.append(
                ProblemEvent(
                    problem_id=problem.id, event="reopened", entry_id=entry_id, new_incidents=new
                )
            )
        elif now >= quiet_until(policy, problem.resolved_at):
            entry_id = mark_closed(session, problem, actor=actor, note="", now=now)
            events.append(ProblemEvent(problem_id=problem.id, event="closed", entry_id=entry_id))
    return events
