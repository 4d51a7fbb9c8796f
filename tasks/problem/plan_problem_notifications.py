"""Plan what a problem's owner (email) and problem.yaml's chat tags hear: that it was opened,
grew or came back. Each message is keyed on the timeline entry of what happened, so a retried
run or a redelivery sends nothing twice."""

from __future__ import annotations

from prefect import task
from sqlmodel import Session

from itilflow.models import Subject, notified_keys, problem_number, session_scope
from itilflow.notifications import render_message
from itilflow.notifications.plans import NotificationPlan, channels_left, make_plan
from itilflow.notifications.problem_context import owner_emails, problem_context
from itilflow.runtime import Runtime, runtime
from itilflow.services import problems

# What the owner hears about; resolved and closed are on the timeline only.
ANNOUNCED = ("opened", "updated", "reopened")
ACTOR = "flow:review-problems"


@task(name="plan-problem-notifications", retries=2, retry_delay_seconds=1)
def plan_problem_notifications(events: list[problems.ProblemEvent]) -> list[NotificationPlan]:
    """A message for every opened, grown or reopened problem; channels that already delivered
    its key get nothing, and a message with no channel left is left out."""
    rt = runtime()
    announced = [event for event in events if event.event in ANNOUNCED]
    with session_scope(rt.engine) as session:
        delivered = notified_keys(
            session=session, subjects={Subject("problem", e.problem_id) for e in announced}
        )
        plans = [_plan(session, rt, event) for event in announced]
    return [plan for plan in plans if channels_left(plan, delivered)]


def _plan(session: Session, rt: Runtime, event: problems.ProblemEvent) -> NotificationPlan:
    problem = problems.load_problem(session, event.problem_id)
    context = {
        "problem": problem_context(
            session, problem, policies=rt.policies, public_url=rt.settings.public_url or ""
        ),
        "event": event.event,
    }
    return make_plan(
        Subject("problem", event.problem_id),
        number=problem_number(event.problem_id),
        key=f"{event.event}:{event.entry_id}",
        template="problem_opened",
        actor=ACTOR,
        emails=owner_emails(session, problem),
        tags=list(rt.policies.problem.notify_tags),
        message=render_message("problem_opened", rt.policies.problem.language, context),
    )
