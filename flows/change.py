"""The change process: assess the risk, get the approvals, wait for the window, then back up,
implement, verify, and roll back when verification fails."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger

from itilflow.executors import (
    ChangePlan,
    PlanAbandoned,
    aexecute_plan,
    aroll_back_plan,
    interrupted,
)
from itilflow.flows.notify import deliver_and_keep
from itilflow.models import parse_change_ref
from itilflow.tasks.change.assess_change_risk import assess_change_risk
from itilflow.tasks.change.begin_change import begin_change
from itilflow.tasks.change.begin_implementation import begin_implementation
from itilflow.tasks.change.check_window import check_window
from itilflow.tasks.change.close_lapsed_acceptances import close_lapsed_acceptances
from itilflow.tasks.change.confirm_run_lost import confirm_run_lost
from itilflow.tasks.change.expire_unanswered_changes import expire_unanswered_changes
from itilflow.tasks.change.kill_lost_steps import kill_lost_steps
from itilflow.tasks.change.mark_crashed import mark_crashed
from itilflow.tasks.change.open_rollback_incident import open_rollback_incident
from itilflow.tasks.change.plan_acceptance_request import plan_acceptance_request
from itilflow.tasks.change.plan_approval_reminders import plan_approval_reminders
from itilflow.tasks.change.plan_change_notification import plan_change_notification
from itilflow.tasks.change.record_approval_input import record_approval_input
from itilflow.tasks.change.record_change_outcome import record_change_outcome
from itilflow.tasks.change.record_change_request import record_change_request
from itilflow.tasks.change.recover_lost_implementations import recover_lost_implementations
from itilflow.tasks.change.request_approvals import approval_step
from itilflow.tasks.change.run_change_action import run_change_action
from itilflow.tasks.change.schedule_implementation import schedule_implementation
from itilflow.tasks.change.start_waiting_changes import start_waiting_changes
from itilflow.tasks.change.take_over_change import take_over_change


def _on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    parameters = flow_run.parameters or {}
    change_id = parameters.get("change_id")
    if change_id is None and "change" in parameters:  # decide-change names it by number
        try:
            change_id = parse_change_ref(parameters["change"])
        except ValueError:
            return
    if change_id is not None:
        mark_crashed(int(change_id), state.message or "crashed")


async def implement(change_id: int, version: int) -> str:
    """Backup, steps, verification; on a failure, roll back in reverse order and verify."""
    plan = begin_implementation(change_id, version)
    if plan is None:
        return "skipped"

    try:
        outcome = await aexecute_plan(
            ChangePlan.model_validate(plan), runner=_action_runner(change_id)
        )
    except PlanAbandoned as exc:
        get_run_logger().warning("%s", exc)
        return "taken over by a recovery"
    return await _close(change_id, outcome.model_dump(mode="json"))


def _action_runner(change_id: int) -> Any:
    """Each action of the plan as a task run (visible in the UI, written to the timeline)."""

    async def as_task(phase: str, name: str, action: Any) -> Any:
        return await run_change_action(change_id, phase, name, action.model_dump(mode="json"))

    return as_task


async def notify_change(change_id: int, outcome: str) -> None:
    """Tell the outcome through the delivery pipeline: a mail that fails is kept and delivered
    later by the runner, and the change's run goes on."""
    await deliver_and_keep(plan_change_notification(change_id, outcome))


async def _close(change_id: int, outcome: dict[str, Any], lost_run_id: str | None = None) -> str:
    status = record_change_outcome(change_id, outcome, lost_run_id)
    if status == "rollback_failed":
        open_rollback_incident(change_id)
    if status == "awaiting_signoff":  # verified: the requester accepts or rejects next
        await deliver_and_keep(plan_acceptance_request(change_id))
    else:
        await notify_change(change_id, status)
    return status


@flow(
    name="implement-change",
    flow_run_name="implement CHG-{change_id:06d} v{version}",
    on_crashed=[_on_crashed],
    on_cancellation=[_on_crashed],
)
async def implement_change(change_id: int, version: int) -> str:
    """Implement an approved change in its window (scheduled by the change process)."""
    return await implement(change_id, version)


async def await_approvals(change_id: int, version: int) -> str:
    """Where the approvals stand; ask the current stage's approvers who were not asked yet.

    "pending" ends the run: a change waiting for decisions is rows, not a process. A decision
    (the link's page, the `decide-change` form) starts the change's next run, which finds it;
    `remind-approvers` expires a stage left unanswered and starts a run for a decision that
    none took up (the gateway died between storing it and starting the run)."""
    step = approval_step(change_id, version)
    await deliver_and_keep(step.mails)  # a request mail that fails is kept, not dropped
    return step.outcome


# The implementation runs inside this run rather than as a subflow: creating a subflow run right
# after the resume met the SQLite Prefect server's "database is locked" 503 and its client's 2 s
# back-off in 9 of 10 approvals (bench/change_approval.py: 4.25 s -> 1.06 s median).
@flow(
    name="change",
    flow_run_name="CHG-{change_id:06d}",
    on_crashed=[_on_crashed],
    on_cancellation=[_on_crashed],
)
async def manage_change(change_id: int) -> str:
    """Risk, approvals, window, implementation: the change as far as it can go now. A run ends
    while the change waits for decisions; the next decision starts the next run."""
    return await carry_on(change_id)


async def carry_on(change_id: int) -> str:
    """Take the change from where its rows say it stands: every step checks them first, so a
    run started twice, or again after a decision, does nothing twice."""
    version = begin_change(change_id)
    if version is None:
        return "nothing to do"
    risk = assess_change_risk(change_id, version)  # once per version: a rerun reads it
    if risk.stale:
        return "stale"
    if risk.refused:
        await notify_change(change_id, "refused")
        return "refused"
    decision = await await_approvals(change_id, version)
    if decision == "pending":
        return "awaiting approval"
    if decision == "stale":
        return "superseded by a newer version"
    if decision != "approved":
        await notify_change(change_id, decision)
        return decision
    window = check_window(change_id, version)
    if window.when == "missed":
        await notify_change(change_id, "expired")
        return "expired"
    if window.when == "later":
        assert window.at is not None
        await schedule_implementation(change_id, version, window.at)
        return f"scheduled for {window.at}"
    return await implement(change_id, version)


@flow(
    name="decide-change",
    flow_run_name="decide {change}",
    on_crashed=[_on_crashed],
    on_cancellation=[_on_crashed],
)
async def decide_change(
    change: str,
    decision: Literal["approve", "reject"],
    code: str,
    comment: str = "",
) -> str:
    """Approve or reject a change from the Prefect UI, with the code from your mail.

    Open the approve or reject link in your approval mail and press the button: a one-time
    code is mailed to your address on record. Enter it here with the same decision. Prefect has
    no users, so the code says who decides (the approver it was mailed to); a run without a
    valid code decides nothing and is recorded on the change's timeline as refused.

    Args:
        change: the change's number, e.g. CHG-000042
        decision: approve or reject, as the link you pressed
        code: the one-time code from your mail
        comment: a note for the change's timeline
    """
    taken = record_approval_input(change, decision, code, comment)
    if taken.outcome != "decided":
        get_run_logger().warning("decision refused: %s", taken.message)
        return f"refused: {taken.message}"
    assert taken.change_id is not None
    # Carried on in this run (not a subflow, not a new deployment run): the decider's wait ends
    # with the change implemented, or its next stage asked.
    return await carry_on(taken.change_id)


@flow(name="request-change", flow_run_name="request {title}")
async def request_change(
    title: str,
    plan: ChangePlan | None = None,
    category: Literal["standard", "normal", "emergency"] = "normal",
    cis: list[str] | None = None,
    description: str = "",
    planned_start: datetime | None = None,
    planned_end: datetime | None = None,
    requester_email: str | None = None,
    template: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> str:
    """Open a change from the Prefect UI; this run then carries it through approval.

    Args:
        title: what changes, in one line
        plan: backup pre-steps, implementation steps each with its undo, verification checks
        category: standard (a template of change.yaml, with its parameters), normal, or
            emergency (ECAB); a plan of your own is never standard
        cis: affected configuration items
        planned_start: start of the agreed window (with time zone); empty means the next
            maintenance window outside the change freezes
        planned_end: end of the window
        requester_email: who hears about the outcome
        template: a standard change's template; its plan is built from it
        parameters: the template's parameters
    """
    change_id = record_change_request(
        title,
        plan.model_dump(mode="json") if plan is not None else None,
        category,
        cis or [],
        description,
        planned_start,
        planned_end,
        requester_email,
        template,
        parameters,
    )
    return await manage_change(change_id)


@flow(name="remind-approvers")
async def remind_approvers() -> dict[str, int]:
    """Scheduled: remind approvers who have not answered, escalate to the policy's contact,
    expire changes whose stage went unanswered too long, close changes whose acceptance window
    lapsed (accepted by lapse), start the runs of changes that need one (stored while the
    engine could not be reached, or decided while nothing ran), and recover changes whose
    implementing run ended without them (a lost run the triggers missed)."""
    reminders = plan_approval_reminders()
    await deliver_and_keep(reminders)  # a reminder that fails is kept and redelivered
    reminded = len(reminders)
    expired = expire_unanswered_changes()
    for change_id in expired:
        await notify_change(change_id, "expired")
    lapsed = close_lapsed_acceptances()
    for change_id in lapsed:
        await notify_change(change_id, "accepted_by_lapse")
    started = await start_waiting_changes()
    recovering = await recover_lost_implementations()
    return {
        "reminded": reminded,
        "expired": len(expired),
        "accepted_by_lapse": len(lapsed),
        "started": started,
        "recovering": recovering,
    }


@flow(name="recover-change", flow_run_name="recover {flow_run}")
async def recover_change(
    flow_run: str, last_heartbeat: str | None = None, why: str | None = None
) -> str:
    """Started by this deployment's triggers (prefect.yaml) when a change's run stops sending
    heartbeats (its worker's host or process died) or crashes, and by `remind-approvers` for
    lost runs the triggers missed.

    A run lost mid-implementation is rolled back: what its steps left running on this host is
    killed first (their process groups are on disk), then the steps it started are undone latest
    first (its undos tolerate a step that did not finish) and the rollback is verified. Rolling back
    rather than resuming: a step cut off half-way may not be safe to run twice. A run lost while
    waiting for approvals is started again. The timeline says which, and why (`why`: what
    found the run lost, when it was not a trigger).
    """
    lost_run_id = await confirm_run_lost(flow_run, last_heartbeat)
    if lost_run_id is None:
        return "not lost"
    reason = why or (f"no heartbeat since {last_heartbeat}" if last_heartbeat else "crashed")
    claim = take_over_change(lost_run_id, reason)
    if claim.action == "restart":
        from itilflow.engine import PrefectChangeEngine

        assert claim.change_id is not None
        await PrefectChangeEngine().start(claim.change_id)
        return "restarted"
    if claim.action != "roll_back":
        return f"nothing to do: {claim.why}"
    change_id = claim.change_id
    assert change_id is not None
    kill_lost_steps(change_id, lost_run_id)
    if claim.in_flight:
        phase, name = claim.in_flight
    elif claim.started_steps:
        phase, name = "step", claim.started_steps[-1]
    else:
        phase, name = "backup", "(before any step)"
    try:
        outcome = await aroll_back_plan(
            ChangePlan.model_validate(claim.plan),
            claim.started_steps,
            failure=interrupted(phase, name, f"interrupted: the run {lost_run_id} was lost"),
            runner=_action_runner(change_id),
        )
    except PlanAbandoned as exc:
        get_run_logger().warning("%s", exc)
        return "taken over by another recovery"
    return await _close(change_id, outcome.model_dump(mode="json"), lost_run_id)
