"""The incident process: new incidents are classified, assigned, announced and put on the clock;
SLA timers and escalation steps that come due tell the people the policy names, once; resolved
incidents are announced and their reporters asked how it went; notifications that failed through
all of the engine's retries are kept and delivered again later (flows/notify.py).

A flow run takes every incident that came due together (a burst of alerts is one run, not forty):
the engine's cost is per run and per task run, so batching is what keeps the first notification
within seconds of the alert (docs/design.md, bench/alert_latency.py).
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from itilflow.flows.naming import incidents_run_name, steps_untagged, triggers_run_name
from itilflow.flows.notify import deliver_and_keep
from itilflow.notifications.plans import NotificationRequest, request
from itilflow.runtime import runtime
from itilflow.tasks.incident.assign_incident import assign_incidents
from itilflow.tasks.incident.check_sla_timers import check_sla_timers
from itilflow.tasks.incident.classify_incident import classify_incidents
from itilflow.tasks.incident.match_known_error import match_known_errors
from itilflow.tasks.incident.record_sla_timers import record_sla_timers
from itilflow.tasks.incident.start_sla_timers import start_sla_timers
from itilflow.tasks.incident.survey_links import survey_links
from itilflow.tasks.incident.write_post_incident_reports import write_post_incident_reports
from itilflow.tasks.notify.plan_notifications import plan_notifications


class Resolution(BaseModel):
    incident_id: int
    resolution: int = 1  # the incident's n-th resolution: a reopened one is surveyed again
    # Its priority when it was resolved (the trigger's); None: not known here, the report's
    # step reads the incident.
    priority: str | None = None


@flow(name="open-incidents", flow_run_name=incidents_run_name("open"), retries=1)
@steps_untagged
async def open_incidents(incident_ids: list[int]) -> dict[int, str]:
    """Classify, assign, notify the assignees and the routed channels, start the SLA timers."""
    priorities = classify_incidents(incident_ids)
    assign_incidents(incident_ids)
    known_errors = match_known_errors(incident_ids)
    await notify_incidents(
        [
            request(
                incident_id,
                "incident_opened",
                audience=["assignee", "on_call"],
                key="opened",
                actor="flow:open-incident",
                extra={"known_error": known_errors.get(incident_id)},
            )
            for incident_id in incident_ids
        ]
    )
    start_sla_timers(incident_ids)
    return priorities


@flow(name="incidents-resolved", flow_run_name=incidents_run_name("resolved"), retries=1)
@steps_untagged
async def incidents_resolved(resolutions: list[Resolution]) -> None:
    """Tell the routed channels and ask each reporter for a score; then write the post-incident
    report of each major incident (problem.yaml `post_incident`) and mail it.

    The report is a step of this flow rather than a flow of its own: the resolution's trigger
    is already durable (a batch that fails is run again by the runner, and what was delivered is
    not sent twice), so a report is never lost nor mailed twice without a second schedule or
    deployment; it comes after the announcements and surveys, so rendering the PDF (about a
    second) delays none of them."""
    links = survey_links([r.incident_id for r in resolutions])
    announcements = [
        request(
            r.incident_id,
            "incident_resolved",
            audience=["on_call"],
            key=f"resolved:{r.resolution}",
            actor="flow:incident-resolved",
        )
        for r in resolutions
    ]
    surveys = [
        request(
            r.incident_id,
            "survey_request",
            audience=["reporter"],
            key=f"survey:{r.resolution}",
            actor="flow:incident-resolved",
            extra={"survey_url": links[r.incident_id]},
        )
        for r in resolutions
        if r.incident_id in links
    ]
    await notify_incidents(announcements + surveys)
    major = runtime().policies.problem.post_incident.priorities
    reviewed = [r for r in resolutions if r.priority is None or r.priority in major]
    if reviewed:
        await deliver_and_keep(
            write_post_incident_reports([(r.incident_id, r.resolution) for r in reviewed])
        )


async def notify_incidents(requests: list[NotificationRequest]) -> None:
    """Plan the incidents' messages and send them through the delivery pipeline."""
    await deliver_and_keep(plan_notifications(requests))


# One flow run fires every timer due together, with the per-timer work inside its tasks: one run
# per timer kept about one timer a second (bench/sla_timers.py).
@flow(name="sla-timers", flow_run_name=triggers_run_name("timers"), retries=1)
@steps_untagged
async def fire_sla_timers(trigger_ids: list[int]) -> dict[str, int]:
    steps = check_sla_timers(trigger_ids)
    due = [step for step in steps if step.skip is None]
    await notify_incidents([wanted for step in due for wanted in step.notifications])
    record_sla_timers([step.trigger_id for step in due], {s.trigger_id: s.details for s in due})
    return {"fired": len(due), "skipped": len(steps) - len(due)}
