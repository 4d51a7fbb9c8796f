"""Problem review: repeated incidents become problems with an owner, who hears of them; fixed
problems close after a quiet period, or reopen when the incidents come back.

Scheduled weekly by prefect.yaml (deployment `review-problems`, in step with problem.yaml's
`schedule`); run it from the Prefect UI at any time. Running it twice changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from itilflow.flows.notify import deliver_and_keep
from itilflow.models import problem_number
from itilflow.notifications.plans import channels_left
from itilflow.tasks.problem.close_quiet_problems import close_quiet_problems
from itilflow.tasks.problem.detect_repeated_incidents import detect_repeated_incidents
from itilflow.tasks.problem.open_or_update_problems import open_or_update_problems
from itilflow.tasks.problem.plan_problem_notifications import plan_problem_notifications


@flow(name="review-problems", retries=1)
async def review_problems() -> dict[str, Any]:
    """Find repeated incidents, open or update their problems, resolve, close or reopen fixed
    problems, and tell the owners (through the delivery pipeline: what fails is kept and
    delivered later by the runner). "notified": each message sent or kept, and its channels."""
    clusters = detect_repeated_incidents()
    events = open_or_update_problems(clusters)
    events += close_quiet_problems()
    plans = plan_problem_notifications(events)
    kept = await deliver_and_keep(plans)
    return {
        "clusters": [f"{c.kind}={c.value} ({c.count})" for c in clusters],
        "events": [f"{problem_number(e.problem_id)} {e.event}" for e in events],
        "notified": {
            f"{plan['number']} {plan['key'].partition(':')[0]}": channels_left(plan, set())
            for plan in plans
        },
        "kept": kept,
    }
