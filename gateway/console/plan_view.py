"""A change's plan as the console shows it: every backup pre-step, step with its undo, and check,
each action as the text it runs (a command, or a request's method and URL with its headers and
body), for the change page and the approval page alike.

What the executors keep out of a run's output stays out of the page too: environment values are
secrets by contract (executors.schema.ShellAction), so only their names are shown, and so are
headers whose name looks secret; a URL loses its user:password part. The template escapes the
rest: every value here is text from a record.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from itilflow.executors import ChangePlan, HttpAction, NamedAction, ShellAction
from itilflow.executors.schema import REDACTED, SENSITIVE_HEADER, strip_userinfo

# Characters of a request body shown at most: enough to read what is sent.
BODY_SHOWN = 4000
SECTIONS = ("backup", "steps", "verify", "rollback_verify")


@dataclass(frozen=True)
class ActionView:
    kind: str  # shell | http
    text: str  # the command line, or "METHOD url"
    timeout: float
    cwd: str | None = None
    env_names: list[str] = field(default_factory=list)
    expect_exit: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None
    expect_status: str | None = None
    expect_text: str | None = None


@dataclass(frozen=True)
class ItemView:
    name: str
    do: ActionView
    undo: ActionView | None = None
    irreversible: bool = False


@dataclass(frozen=True)
class PlanView:
    backup: list[ItemView]
    steps: list[ItemView]
    verify: list[ItemView]
    rollback_verify: list[ItemView]
    readable: bool = True
    stored: bool = True  # False for a change stored without a plan

    @property
    def irreversible_steps(self) -> list[str]:
        return [step.name for step in self.steps if step.irreversible]


def plan_view(plan: dict[str, Any]) -> PlanView:
    """The stored plan as the pages show it; an unreadable one (stored before a schema change)
    is said to be so rather than shown raw, since its raw JSON may hold environment values."""
    if not plan:
        return PlanView([], [], [], [], stored=False)
    try:
        parsed = ChangePlan.model_validate(plan)
    except ValidationError:
        return PlanView([], [], [], [], readable=False)
    return PlanView(
        backup=[_named(item) for item in parsed.backup],
        steps=[
            ItemView(
                name=step.name,
                do=action_view(step.do),
                undo=action_view(step.undo) if step.undo is not None else None,
                irreversible=step.irreversible,
            )
            for step in parsed.steps
        ],
        verify=[_named(item) for item in parsed.verify],
        rollback_verify=[_named(item) for item in parsed.rollback_verify],
    )


def _named(item: NamedAction) -> ItemView:
    return ItemView(name=item.name, do=action_view(item.do))


def action_view(action: ShellAction | HttpAction) -> ActionView:
    if isinstance(action, ShellAction):
        return ActionView(
            kind="shell",
            text=action.command if action.command is not None else shlex.join(action.argv or []),
            timeout=action.timeout,
            cwd=action.cwd,
            env_names=sorted(action.env),
            expect_exit=action.expect_exit,
        )
    return ActionView(
        kind="http",
        text=f"{action.method} {strip_userinfo(action.url)}",
        timeout=action.timeout,
        headers=[
            (name, REDACTED if SENSITIVE_HEADER.search(name) else value)
            for name, value in action.headers.items()
        ],
        body=_body(action),
        expect_status=", ".join(str(status) for status in action.expect_status),
        expect_text=action.expect_text,
    )


def _body(action: HttpAction) -> str | None:
    if action.json_body is not None:
        text = json.dumps(action.json_body, indent=2, ensure_ascii=False)
    elif action.body is not None:
        text = action.body
    else:
        return None
    return text if len(text) <= BODY_SHOWN else text[:BODY_SHOWN] + " ..."
