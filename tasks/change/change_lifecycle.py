"""The change's bookkeeping steps: start, window, outcome, review, escalation to an incident."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from prefect import task
from prefect.runtime import flow_run
from sqlmodel import select

from itilflow import clock
from itilflow.models import (
    Change,
    ChangeStatus,
    add_change_entry,
    get_change_timeline,
    session_scope,
)
from itilflow.notifications import NotificationError, asend_chat, asend_email, render_message
from itilflow.notifications.change_context import change_context
from itilflow.runtime import runtime
from itilflow.services import changes, incidents


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
        this_run = flow_run.get_id()
        if this_run and change.flow_run_id not in (None, str(this_run)):
            return  # a recovery restarted the process: the new run owns the wait now
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
        # This run now owns the change: a recovery takes it over only from this id.
        change.flow_run_id = str(flow_run.get_id() or "") or change.flow_run_id
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
def record_change_outcome(
    change_id: int, outcome: dict[str, Any], lost_run_id: str | None = None
) -> str:
    """Set the final status and write the post-implementation review that closes the change;
    after a recovery (`lost_run_id`), say so in the same transaction."""
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
        if lost_run_id:
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="recovered",
                actor="flow:recover-change",
                message=f"{change.number} {change.status.value.replace('_', ' ')} after its "
                f"run {lost_run_id} was lost mid-implementation",
                data={"lost_run_id": lost_run_id, "outcome": change.status.value},
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


LOST_STATE_NAME = "Lost"
"""A crashed-type state with its own name: its event (prefect.flow-run.Lost) does not fire the
Crashed trigger again for a run a recovery already handles."""


@task(name="confirm-run-lost")
async def confirm_run_lost(flow_run_ref: str, last_heartbeat: str | None) -> str | None:
    """The lost run's id, or None when it is not lost after all.

    A run in a final state other than Completed is lost. A run the server still shows running
    or paused is lost only if no heartbeat came after `last_heartbeat` (the one the trigger saw
    last): a late heartbeat means a slow host, not a dead one. Such a run is marked crashed
    (state name "Lost") so the UI and every later check agree.
    """
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    run_id = UUID(flow_run_ref.removeprefix("prefect.flow-run."))
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        state = run.state
        if state is not None and state.is_final():
            return None if state.type == StateType.COMPLETED else str(run_id)
        if last_heartbeat:
            response = await client.request(
                "POST",
                "/events/filter",
                json={
                    "filter": {
                        "event": {"name": ["prefect.flow-run.heartbeat"]},
                        "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                        "occurred": {
                            "since": last_heartbeat,
                            "until": clock.now().isoformat(),
                        },
                        "order": "DESC",
                    },
                    "limit": 5,
                },
            )
            later = [
                e
                for e in response.json().get("events", [])
                if datetime.fromisoformat(e["occurred"]) > datetime.fromisoformat(last_heartbeat)
            ]
            if later:
                return None
        await client.set_flow_run_state(
            run_id,
            Crashed(
                name=LOST_STATE_NAME,
                message="no heartbeat since "
                f"{last_heartbeat or 'its start'}: its worker or host is gone",
            ),
            force=True,
        )
        return str(run_id)


@task(name="take-over-change")
def take_over_change(lost_run_id: str, reason: str) -> dict[str, Any]:
    """Decide what the lost run's change needs, and claim it for this run if anything.

    Returns `{"action": "none" | "restart" | "roll_back", ...}`: "restart" for a change that was
    waiting for decisions (its process starts again and finds them), "roll_back" for one that
    was being implemented, with the plan and the steps the lost run had started.
    """
    rt = runtime()
    this_run = str(flow_run.get_id() or "") or None
    with session_scope(rt.engine) as session:
        change = session.exec(select(Change).where(Change.flow_run_id == lost_run_id)).first()
        if change is None or change.id is None:
            return {"action": "none", "why": "no change belongs to this run any more"}
        change_id = change.id
        status = change.status
        if status in changes.AWAITING_DECISIONS:
            if not changes.take_over_change(
                session=session, change_id=change_id, lost_run_id=lost_run_id, new_run_id=None
            ):
                return {"action": "none", "why": "another run took the change over"}
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="process_restarted",
                actor="flow:recover-change",
                message=f"the change's run {lost_run_id} was lost ({reason}) while waiting for "
                "decisions: starting it again; decisions already given count",
                data={"lost_run_id": lost_run_id},
            )
            return {"action": "restart", "change_id": change_id}
        if status not in changes.MID_IMPLEMENTATION:
            return {"action": "none", "why": f"{change.number} is {status.value}"}
        if not changes.take_over_change(
            session=session, change_id=change_id, lost_run_id=lost_run_id, new_run_id=this_run
        ):
            return {"action": "none", "why": "another run took the change over"}
        where = changes.read_interruption(get_change_timeline(session=session, change_id=change_id))
        during = f"{where.in_flight[0]} {where.in_flight[1]!r}" if where.in_flight else "a step"
        undo = list(reversed(where.started_steps))
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="recovery_started",
            actor="flow:recover-change",
            message=f"the run {lost_run_id} was lost ({reason}) during {during}: rolling back "
            f"the steps it started, latest first: {', '.join(undo) or 'none'}",
            data={
                "lost_run_id": lost_run_id,
                "decision": "roll_back",
                "started_steps": where.started_steps,
                "in_flight": list(where.in_flight) if where.in_flight else None,
            },
        )
        return {
            "action": "roll_back",
            "change_id": change_id,
            "plan": change.plan,
            "started_steps": where.started_steps,
            "in_flight": list(where.in_flight) if where.in_flight else None,
            "lost_run_id": lost_run_id,
        }
