"""The change's bookkeeping steps: start, window, outcome, review, escalation to an incident."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from itilflow import changes, clock, incidents
from itilflow.change_messages import change_context
from itilflow.models import (
    Change,
    ChangeStatus,
    add_change_entry,
    get_change_timeline,
    session_scope,
)
from itilflow.notifications import NotificationError, asend_chat, asend_email, render_message
from itilflow.runtime import runtime


@task(name="begin-change")
def begin_change(change_id: int) -> int | None:
    """Tie the change to this run; None when there is nothing left to do for it."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.status not in (ChangeStatus.submitted, ChangeStatus.awaiting_approval):
            return None
        change.flow_run_id = str(flow_run.get_id() or "") or None
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="process_started",
            actor="flow:change",
            message=f"version {change.version}",
            data={"flow_run_id": change.flow_run_id, "version": change.version},
        )
        return change.version


@task(name="check-window")
def check_window(change_id: int, version: int) -> dict[str, Any]:
    """now: implement at once; later: at planned_start; missed: the window has passed."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        now = clock.now()
        if change.planned_end and change.planned_end <= now:
            change.status = ChangeStatus.expired
            session.add(change)
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="expired",
                actor="flow:change",
                message="approved after its window closed; plan a new window",
            )
            return {"when": "missed"}
        if change.planned_start and change.planned_start > now:
            return {"when": "later", "at": change.planned_start.isoformat()}
        return {"when": "now"}


@task(name="expire-change")
def expire_change(change_id: int, version: int) -> None:
    """No decision within the policy's time: void the links and say so."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.version != version or change.status != ChangeStatus.awaiting_approval:
            return
        changes.void_requests(session, change_id)
        change.status = ChangeStatus.expired
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="expired",
            actor="flow:change",
            message="no decision within the approval time; the links are void",
        )


@task(name="schedule-implementation")
async def schedule_implementation(change_id: int, version: int, at: str) -> str:
    """A run of the implement-change deployment, scheduled by the engine for the window."""
    from prefect.deployments import run_deployment

    run = await run_deployment(
        "implement-change/implement-change",
        parameters={"change_id": change_id, "version": version},
        scheduled_time=datetime.fromisoformat(at),
        timeout=0,
    )
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.status = ChangeStatus.scheduled
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="scheduled",
            actor="flow:change",
            message=f"implementation scheduled for {at}",
            data={"flow_run_id": str(run.id)},
        )
    return str(run.id)


@task(name="begin-implementation")
def begin_implementation(change_id: int, version: int) -> dict[str, Any] | None:
    """The plan to run, or None when the change is not (or no longer) approved as this version."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.version != version or change.status not in (
            ChangeStatus.approved,
            ChangeStatus.scheduled,
        ):
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="implementation_skipped",
                actor="flow:implement-change",
                message=f"version {version} is not approved (now version {change.version}, "
                f"{change.status.value})",
            )
            return None
        change.status = ChangeStatus.implementing
        change.updated_at = clock.now()
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="implementation_started",
            actor="flow:implement-change",
            message=f"{len(change.plan.get('steps', []))} steps",
        )
        return change.plan


@task(name="record-change-outcome")
def record_change_outcome(change_id: int, outcome: dict[str, Any]) -> str:
    """Set the final status and write the post-implementation review that closes the change."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        change.status = ChangeStatus(outcome["outcome"])
        change.updated_at = clock.now()
        failure = outcome.get("failure")
        change.review = {
            "outcome": outcome["outcome"],
            "reviewed_at": clock.now().isoformat(),
            "actions": [
                {
                    "phase": e["phase"],
                    "name": e["name"],
                    "ok": e["result"]["ok"],
                    "summary": e["result"]["summary"],
                    "seconds": round(e["result"]["duration_seconds"], 3),
                }
                for e in outcome["events"]
            ],
            "failure": (
                {
                    "phase": failure["phase"],
                    "name": failure["name"],
                    "summary": failure["result"]["summary"],
                }
                if failure
                else None
            ),
            "not_rolled_back": outcome.get("not_rolled_back", []),
        }
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="reviewed",
            actor="flow:implement-change",
            message=summary_of(change),
            data=change.review,
        )
        return change.status.value


def summary_of(change: Change) -> str:
    review = change.review or {}
    failure = review.get("failure")
    text = f"{change.number} {change.status.value.replace('_', ' ')}"
    if failure:
        text += f": {failure['phase']} {failure['name']} failed ({failure['summary']})"
    if review.get("not_rolled_back"):
        text += f"; still applied: {', '.join(review['not_rolled_back'])}"
    return text


@task(name="open-rollback-incident")
def open_rollback_incident(change_id: int) -> str:
    """A failed rollback leaves a system in an unknown state: a P1 incident, opened through the
    incident process like any other."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        incident, _ = incidents.open_incident(
            session=session,
            new=incidents.NewIncident(
                title=f"Rollback of {change.number} failed: {change.title}"[:300],
                description=summary_of(change),
                category=rt.policies.change.rollback_failure_category,
                ci_name=change.ci_names[0] if change.ci_names else None,
                priority="P1",
                reporter_email=change.requester_email,
                source="change",
            ),
            policies=rt.policies,
            actor="flow:implement-change",
            dedup_key=f"change-rollback:{change_id}:{change.version}",
        )
        change.incident_id = incident.id
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="incident_opened",
            actor="flow:implement-change",
            message=f"{incident.number} opened (P1)",
        )
        return incident.number


@task(name="notify-change", retries=3, retry_delay_seconds=[2, 10, 30])
async def notify_change(change_id: int, outcome: str) -> None:
    """Tell the requester by email and the policy's chat tags; raise so the engine retries."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        context = {
            "change": change_context(
                change, policies=rt.policies, public_url=rt.settings.public_url or ""
            ),
            "outcome": outcome.replace("_", " "),
            "summary": summary_of(change) if change.review else outcome.replace("_", " "),
        }
        address = change.requester_email
    message = render_message("change_outcome", rt.policies.change.language, context)
    sends = []
    if address:
        sends.append(asend_email(message, to=[address], settings=rt.mail))
    if rt.policies.change.notify_tags and rt.settings.apprise_config:
        sends.append(
            asend_chat(
                title=message.chat_title,
                body=message.chat_body,
                tags=rt.policies.change.notify_tags,
                config=rt.settings.apprise_config,
            )
        )
    errors = [
        r
        for r in await asyncio.gather(*sends, return_exceptions=True)
        if isinstance(r, BaseException)
    ]
    if errors:
        raise NotificationError("; ".join(str(e) for e in errors))


def mark_crashed(change_id: int, reason: str) -> None:
    """The run died: say what may be applied, so nobody takes the change for untouched."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = session.get(Change, change_id)
        if change is None or change.status != ChangeStatus.implementing:
            return
        started = [
            e.data.get("name")
            for e in get_change_timeline(session=session, change_id=change_id)
            if e.kind == "step_started"
        ]
        change.status = ChangeStatus.crashed
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="crashed",
            actor="flow:implement-change",
            message=f"the run died during implementation ({reason}); steps possibly applied: "
            f"{', '.join(started) or 'none'}; check the system before anything else",
            data={"possibly_applied": started},
        )
