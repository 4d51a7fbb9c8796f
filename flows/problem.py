"""Problem review: repeated incidents become problems with an owner, who hears of them; fixed
problems close after a quiet period, or reopen when the incidents come back.

Scheduled weekly by prefect.yaml (deployment `review-problems`, in step with problem.yaml's
`schedule`); run it from the Prefect UI at any time. Running it twice changes nothing twice.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from itilflow.models import problem_number
from itilflow.tasks.problem.close_quiet_problems import close_quiet_problems
from itilflow.tasks.problem.detect_repeated_incidents import detect_repeated_incidents
from itilflow.tasks.problem.notify_problem_owners import notify_problem_owners
from itilflow.tasks.problem.open_or_update_problems import open_or_update_problems


@flow(name="review-problems", retries=1)
async def review_problems() -> dict[str, Any]:
    """Find repeated incidents, open or update their problems, resolve, close or reopen fixed
    problems, and tell the owners."""
    clusters = detect_repeated_incidents()
    events = open_or_update_problems(clusters)
    events += close_quiet_problems()
    sent = await notify_problem_owners(events)
    return {
        "clusters": [f"{c.kind}={c.value} ({c.count})" for c in clusters],
        "events": [f"{problem_number(e.problem_id)} {e.event}" for e in events],
        "notified": sent,
    }
