from __future__ import annotations

import os
import re
from typing import Any

from prefect import task
from prefect.runtime import flow_run

from itilflow.executors import (
    ActionResult,
    Containment,
    NamedAction,
    PlanAbandoned,
    arun_action,
)
from itilflow.executors.results import redact, secret_values
from itilflow.models import add_change_entry, session_scope
from itilflow.runtime import Runtime, runtime
from itilflow.services import changes
from itilflow.tasks.change.kill_lost_steps import step_ledger

# Environment variables of the worker whose values are secrets, wherever they came from.
_SECRET_ENV = re.compile(
    r"^(ITILFLOW_.*(TOKEN|KEY|PASSWORD|SECRET|AUTH).*|PREFECT_API_AUTH_STRING|PREFECT_API_KEY"
    r"|PREFECT_SERVER_API_AUTH_STRING)$"
)


@task(name="run-change-action", task_run_name="{phase}: {name}")
async def run_change_action(
    change_id: int, phase: str, name: str, action: dict[str, Any]
) -> ActionResult:
    """Run one backup, step, check or undo; written to the timeline before and after, so a
    crash in between leaves the change marked as possibly half-applied.

    Only the change's own run may act: a run declared lost and taken over by a recovery stops
    here (PlanAbandoned) instead of racing the recovery's rollback."""
    rt = runtime()
    parsed = NamedAction.model_validate({"name": name, "do": action}).do
    contained = step_containment(rt)
    secrets = secret_values([*contained.secrets, *getattr(parsed, "env", {}).values()])
    this_run = flow_run.get_id()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if this_run and change.flow_run_id != str(this_run):
            raise PlanAbandoned(
                f"{change.number} now belongs to run {change.flow_run_id}: this run "
                f"({this_run}) was declared lost and stops without touching it"
            )
        add_change_entry(
            session=session,
            change_id=change_id,
            kind=f"{phase}_started",
            actor="flow:implement-change",
            message=redact(f"{phase} {name}: {parsed.describe()}", secrets),
            data={"phase": phase, "name": name},
        )
    # Its process group on disk while it runs: a stack killed mid-step finds it on restart.
    ledger = step_ledger(rt, change_id, str(this_run), phase, name) if this_run else None
    result = await arun_action(parsed, contained, ledger)
    with session_scope(rt.engine) as session:
        add_change_entry(
            session=session,
            change_id=change_id,
            kind=f"{phase}_{'ok' if result.ok else 'failed'}",
            actor="flow:implement-change",
            message=f"{phase} {name}: {result.summary}",
            data={
                "phase": phase,
                "name": name,
                "output": result.output,
                "exit_code": result.exit_code,
                "status_code": result.status_code,
                "seconds": round(result.duration_seconds, 3),
            },
        )
    return result


def step_containment(rt: Runtime) -> Containment:
    """What steps run under: change.yaml's `steps:`, and every secret this worker knows."""
    steps = rt.policies.change.steps
    return Containment(
        environment=tuple(steps.environment),
        run_as=steps.run_as,
        run_as_group=steps.run_as_group,
        cwd_roots=tuple(steps.cwd_roots),
        http_hosts=tuple(steps.http_hosts),
        secrets=tuple(known_secrets(rt)),
    )


def known_secrets(rt: Runtime) -> list[str]:
    s = rt.settings
    values = [
        secret.get_secret_value()
        for secret in (
            s.api_token,
            s.secret_key,
            s.smtp_password,
            s.prefect_auth_string,
            s.prefect_database_url,
        )
        if secret is not None
    ]
    values += [value for name, value in os.environ.items() if _SECRET_ENV.match(name)]
    # "user:password": a step may print the password alone.
    values += [v.split(":", 1)[1] for v in list(values) if ":" in v and "//" not in v]
    return [value for value in values if value.strip()]
