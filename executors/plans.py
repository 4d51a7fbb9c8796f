"""Running a change's plan: one action, or backup, steps, verification and the rollback.

Pure library code (no engine, no database):

    plan = ChangePlan.model_validate(change.plan)
    outcome = await aexecute_plan(plan, on_event=write_to_timeline)

`arun_action` runs one action and never raises for a failed one: a non-zero exit, a time-out, a
refused connection or an unexpected HTTP status is an `ActionResult` with `ok=False`.

`aexecute_plan` is the reference run of a plan: backup, steps, verification, and on a failure the
rollback of the completed steps in reverse order, then the rollback's verification. The flow may
call each action as its own task and still reuse this logic, by passing `runner=` (how one action
runs) or by calling `plan_rollback` after a crash.

Decisions:
- A failed step may have partially applied, so its own undo runs too, first. Undo actions must
  therefore tolerate a step that did nothing (restore from the backup, `rm -f`, ...).
- A rollback stops at the first undo that fails (the undos before it may rely on its state), and
  at the first irreversible step (`undo: null` with `irreversible: true`): nothing before such a
  step can be rolled back safely. Both give the outcome "rollback_failed" and list the steps that
  are still applied in `PlanOutcome.not_rolled_back`.
- The rollback's verification runs after every rollback, even a failed one, so whoever picks up a
  "rollback_failed" change sees the system's state.
- Backup, steps and verification stop at their first failure ("on deviation, roll back at once").
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable

from itilflow import clock
from itilflow.executors.containment import Containment
from itilflow.executors.http import run_http
from itilflow.executors.processes import ProcessLedger
from itilflow.executors.results import (
    ActionResult,
    PlanEvent,
    PlanOutcome,
    Timer,
    redact,
    secret_values,
)
from itilflow.executors.schema import ChangePlan, ChangeStep, HttpAction, Phase, ShellAction
from itilflow.executors.shell import run_shell

# ---------------------------------------------------------------------------------------------
# Running one action


async def arun_action(
    action: ShellAction | HttpAction,
    containment: Containment | None = None,
    ledger: ProcessLedger | None = None,
) -> ActionResult:
    """Run one action under `containment` (the default one when None); a failure is an
    `ActionResult` with `ok=False`, never an exception. A shell action's process group is kept
    in `ledger` while it runs."""
    if not isinstance(action, ShellAction | HttpAction):
        raise TypeError(f"not an action: {action!r}")
    timer = Timer()
    try:
        if isinstance(action, ShellAction):
            return await run_shell(action, containment, ledger)
        return await run_http(action, containment)
    except Exception as exc:  # an executor's own bug: a failed action, its text redacted
        secrets = [*(containment.secrets if containment else ()), *_env_values(action)]
        summary = f"error: {type(exc).__name__}: {exc}"
        return timer.result(ok=False, summary=redact(summary, secret_values(secrets)))


def _env_values(action: ShellAction | HttpAction) -> list[str]:
    return list(action.env.values()) if isinstance(action, ShellAction) else []


# ---------------------------------------------------------------------------------------------
# Running a plan

EventHook = Callable[[Phase, str, ActionResult | None], Awaitable[None] | None]
"""Called with `result=None` when an action starts and with its result when it ends."""
Runner = Callable[[Phase, str, ShellAction | HttpAction], Awaitable[ActionResult]]
"""Runs one action of a plan; the default is `arun_action`. A flow passes one that calls a task."""


def plan_rollback(plan: ChangePlan, completed: Iterable[str]) -> list[ChangeStep]:
    """The steps to roll back, latest first, for the implementation steps in `completed`.

    `completed` names the steps that ran (the failed one included: it may have partially
    applied). The list follows the plan's order reversed, whatever the order of `completed`, and
    keeps irreversible steps (their `undo` is None): a rollback stops at the first of them, and
    every step from there on stays applied.
    """
    done = set(completed)
    unknown = done - {step.name for step in plan.steps}
    if unknown:
        raise ValueError(f"not implementation steps of this plan: {sorted(unknown)}")
    return [step for step in reversed(plan.steps) if step.name in done]


class PlanAbandoned(Exception):
    """Raised by a runner when this run may no longer touch the change (another run took it
    over after this one was declared lost): the plan stops at once, without a rollback."""


async def aexecute_plan(
    plan: ChangePlan,
    *,
    on_event: EventHook | None = None,
    runner: Runner | None = None,
) -> PlanOutcome:
    """Backup, steps, verification; on a failure, roll back and verify the rollback.

    Outcomes: "successful"; "backup_failed" (no step ran, nothing to roll back); "rolled_back"
    (a step or a check failed, every undo and every rollback check passed); "rollback_failed"
    (an undo or a rollback check failed, or an irreversible step blocked the rollback).

    An exception from `runner` counts as a failed action (so the rollback still runs), except
    `PlanAbandoned`, which propagates like one from `on_event`. Cancellation propagates at once,
    without a rollback.
    """
    perform, events = _performer(on_event, runner)

    for item in plan.backup:
        event = await perform("backup", item.name, item.do)
        if not event.result.ok:
            return PlanOutcome(outcome="backup_failed", events=events, failure=event)

    failure: PlanEvent | None = None
    completed: list[str] = []
    for step in plan.steps:
        completed.append(step.name)
        event = await perform("step", step.name, step.do)
        if not event.result.ok:
            failure = event
            break
    else:
        for item in plan.verify:
            event = await perform("verify", item.name, item.do)
            if not event.result.ok:
                failure = event
                break
        else:
            return PlanOutcome(outcome="successful", events=events)

    return await _roll_back(plan, completed, failure, perform, events, on_event)


async def aroll_back_plan(
    plan: ChangePlan,
    started: Iterable[str],
    *,
    failure: PlanEvent,
    on_event: EventHook | None = None,
    runner: Runner | None = None,
) -> PlanOutcome:
    """Only the rollback half of `aexecute_plan`: undo the `started` steps (latest first) and
    verify the rollback. For a run that died mid-implementation, `failure` says where."""
    perform, events = _performer(on_event, runner)
    return await _roll_back(plan, list(started), failure, perform, events, on_event)


_Perform = Callable[[Phase, str, ShellAction | HttpAction], Awaitable[PlanEvent]]


def _performer(
    on_event: EventHook | None, runner: Runner | None
) -> tuple[_Perform, list[PlanEvent]]:
    run = runner or _default_runner
    events: list[PlanEvent] = []

    async def perform(phase: Phase, name: str, action: ShellAction | HttpAction) -> PlanEvent:
        await _notify(on_event, phase, name, None)
        timer = Timer()
        try:
            result = await run(phase, name, action)
        except PlanAbandoned:
            raise
        except Exception as exc:  # a crashed action is a failed action: roll back
            result = timer.result(ok=False, summary=f"error: {type(exc).__name__}: {exc}")
        event = PlanEvent(phase=phase, name=name, result=result)
        events.append(event)
        await _notify(on_event, phase, name, result)
        return event

    return perform, events


async def _roll_back(
    plan: ChangePlan,
    completed: list[str],
    failure: PlanEvent | None,
    perform: _Perform,
    events: list[PlanEvent],
    on_event: EventHook | None,
) -> PlanOutcome:
    rollback_ok = True
    remaining = plan_rollback(plan, completed)
    not_rolled_back: list[str] = []
    for index, step in enumerate(remaining):
        if step.undo is None:
            timer = Timer()
            result = timer.result(
                ok=False,
                summary=f"step {step.name!r} is irreversible: the rollback stops here",
            )
            event = PlanEvent(phase="rollback", name=step.name, result=result)
            events.append(event)
            await _notify(on_event, "rollback", step.name, result)
        else:
            event = await perform("rollback", step.name, step.undo)
        if not event.result.ok:
            rollback_ok = False
            not_rolled_back = [s.name for s in remaining[index:]]
            break

    for item in plan.rollback_verify:
        event = await perform("rollback_verify", item.name, item.do)
        rollback_ok = rollback_ok and event.result.ok

    return PlanOutcome(
        outcome="rolled_back" if rollback_ok else "rollback_failed",
        events=events,
        failure=failure,
        not_rolled_back=not_rolled_back,
    )


def interrupted(phase: Phase, name: str, reason: str) -> PlanEvent:
    """The event for an action whose run died before it could record a result."""
    now = clock.now()
    return PlanEvent(
        phase=phase,
        name=name,
        result=ActionResult(ok=False, summary=reason, started_at=now, finished_at=now),
    )


async def _default_runner(
    phase: Phase, name: str, action: ShellAction | HttpAction
) -> ActionResult:
    return await arun_action(action)


async def _notify(
    hook: EventHook | None, phase: Phase, name: str, result: ActionResult | None
) -> None:
    if hook is None:
        return
    returned = hook(phase, name, result)
    if inspect.isawaitable(returned):
        await returned
