"""The survey callback's due work: each level's person is mailed their call (with its deadline)
through the delivery pipeline, and a level whose deadline lapsed with nothing recorded hands over
to the next (services/callbacks.py; policies/callback.py says who and when).

The runner runs it for the `callback` triggers that came due together, in a lane of its own:
a callback waits neither for a flood of SLA timers nor for new incidents.
"""

from __future__ import annotations

from prefect import flow

from itilflow.flows.naming import steps_untagged, triggers_run_name
from itilflow.flows.notify import deliver_and_keep
from itilflow.tasks.incident.check_callbacks import check_callbacks
from itilflow.tasks.notify.plan_notifications import plan_notifications


@flow(name="survey-callbacks", flow_run_name=triggers_run_name("callbacks"), retries=1)
@steps_untagged
async def survey_callbacks(trigger_ids: list[int]) -> dict[str, int]:
    calls = check_callbacks(trigger_ids)
    await deliver_and_keep(plan_notifications(calls))
    return {"calls": len(calls)}
