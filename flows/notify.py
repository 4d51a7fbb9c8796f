"""The delivery pipeline every process's messages go through: plan (each process plans its own
messages), deliver, keep what finally failed, redeliver.

A batch's messages go out together in one task: each delivery is written to its subject's
timeline as soon as it lands, and the engine's retries of the task send only what failed. What
the retries could not deliver is written to the timeline and kept as a `notify` trigger, which
the runner delivers later through `redeliver-notifications`: a notification is never dropped,
and never sent twice once its delivery is recorded.
"""

from __future__ import annotations

from prefect import flow
from prefect.states import State

from itilflow import metrics
from itilflow.flows.naming import steps_untagged, triggers_run_name
from itilflow.notifications.plans import NotificationPlan
from itilflow.runtime import runtime
from itilflow.tasks.notify.deliver_notifications import deliver_notifications
from itilflow.tasks.notify.load_kept_notifications import load_kept_notifications
from itilflow.tasks.notify.record_failed_notifications import record_failed_notifications


def _error_of(state: State) -> str | None:
    """The failure as the engine recorded it (its message names the exception); reading the
    result instead would hand back an un-awaited coroutine inside an async flow."""
    if state.is_completed():
        return None
    return state.message or state.type.value


async def deliver_and_keep(plans: list[NotificationPlan]) -> int:
    """Send everything at once (retried by the engine), and keep what finally failed.
    Returns how many plans were kept for redelivery."""
    if not plans:
        return 0
    delays = runtime().settings.notify_retry_delays
    state = await deliver_notifications.with_options(
        retries=len(delays), retry_delay_seconds=delays
    )(plans, return_state=True)
    error = _error_of(state)
    if error is None:
        return 0
    kept = record_failed_notifications(plans, error)
    metrics.NOTIFICATIONS_KEPT.inc(kept)
    return kept


@flow(name="redeliver-notifications", flow_run_name=triggers_run_name("notifications"))
@steps_untagged
async def redeliver_notifications(trigger_ids: list[int]) -> int:
    """Send what is still undelivered, for any process; while a channel refuses, the run fails
    and the runner tries again with back-off. Returns how many messages were sent."""
    plans = load_kept_notifications(trigger_ids)
    return await deliver_notifications(plans)
