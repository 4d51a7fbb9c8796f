"""What carries out a change's plan: its schema, shell and HTTP actions, running and rolling back.

Pure library code (no engine, no database); the change process calls it one action a task.
"""

from itilflow.executors.containment import DEFAULT_ENVIRONMENT, Containment, ContainmentRefused
from itilflow.executors.plans import (
    PlanAbandoned,
    aexecute_plan,
    aroll_back_plan,
    arun_action,
    interrupted,
    plan_rollback,
)
from itilflow.executors.processes import ProcessLedger, StepProcess
from itilflow.executors.results import ActionResult, PlanEvent, PlanOutcome
from itilflow.executors.schema import (
    KILL_GRACE_SECONDS,
    Action,
    ChangePlan,
    ChangeStep,
    HttpAction,
    NamedAction,
    Outcome,
    Phase,
    ShellAction,
)

__all__ = [
    "KILL_GRACE_SECONDS",
    "Action",
    "ActionResult",
    "ChangePlan",
    "ChangeStep",
    "Containment",
    "ContainmentRefused",
    "DEFAULT_ENVIRONMENT",
    "HttpAction",
    "NamedAction",
    "Outcome",
    "Phase",
    "PlanEvent",
    "PlanAbandoned",
    "PlanOutcome",
    "ProcessLedger",
    "ShellAction",
    "StepProcess",
    "aexecute_plan",
    "aroll_back_plan",
    "arun_action",
    "interrupted",
    "plan_rollback",
]
