"""A change request: submitted, edited, cancelled, assessed for risk and given its approval stages.

The same from the API, the Prefect UI and the flows. Each function works in the caller's
transaction: the caller commits or nothing happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.executors import ChangePlan
from itilflow.models import (
    EDITABLE,
    ApprovalCode,
    ApprovalRequest,
    Change,
    ChangeStatus,
    ConfigurationItem,
    add_change_entry,
)
from itilflow.policies import (
    ApprovalStage,
    ChangePolicy,
    NoAllowedStart,
    Policies,
    RiskAssessment,
    approval_stages,
    assess_risk,
    next_allowed_start,
)
from itilflow.services.changes.templates import (
    Requester,
    StandardChangeRefused,
    StandardPlan,
    build_standard_plan,
)

APPROVAL_PURPOSE = "approval"
FAILED_OUTCOMES = (
    ChangeStatus.rolled_back,
    ChangeStatus.rollback_failed,
    ChangeStatus.backup_failed,
    ChangeStatus.crashed,
)


class ChangeError(ValueError):
    """Refused: the change's state or the input does not allow it; nothing was changed."""


@dataclass
class NewChange:
    """A change as asked for: a normal or emergency one with its `plan`, or a standard one
    naming a `template` and its `parameters` (the plan is then built from the template)."""

    title: str
    plan: dict[str, Any] | None = None
    description: str = ""
    category: Literal["standard", "normal", "emergency"] = "normal"
    ci_names: list[str] = field(default_factory=list)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    requester: str = "api"
    requester_email: str | None = None
    template: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # Every role the requester holds (implied ones too) and its groups: who may use a template.
    requester_roles: frozenset[str] = frozenset()
    requester_groups: frozenset[str] = frozenset()


def validate_plan(plan: dict[str, Any]) -> ChangePlan:
    return ChangePlan.model_validate(plan)


def submit_change(
    *, session: Session, new: NewChange, actor: str, policies: Policies | None = None
) -> Change:
    """Store a new change. A standard one needs `policies` (its template); anything that is not
    a template is normal or emergency, and is approved."""
    standard = _standard_plan(session, new, policies)
    plan = standard.plan if standard else new.plan
    ci_names = standard.ci_names if standard else new.ci_names
    if plan is None:
        raise ChangeError("a plan is required (or a standard-change template)")
    validate_plan(plan)
    if new.planned_start and new.planned_end and new.planned_end <= new.planned_start:
        raise ChangeError("planned_end must be after planned_start")
    change = Change(
        title=new.title,
        description=new.description,
        category=new.category,
        ci_names=ci_names,
        plan=plan,
        planned_start=new.planned_start,
        planned_end=new.planned_end,
        requester=new.requester,
        requester_email=new.requester_email,
    )
    session.add(change)
    session.flush()
    assert change.id is not None
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="submitted",
        actor=actor,
        message=f"{new.category} change submitted"
        + (f" from the template {standard.template}" if standard else ""),
        data={"version": 1}
        | ({"template": standard.template, "parameters": standard.parameters} if standard else {}),
    )
    return change


def _standard_plan(
    session: Session, new: NewChange, policies: Policies | None
) -> StandardPlan | None:
    """The plan of a standard change, built from its template; None for other categories."""
    if new.category != "standard":
        if new.template is not None:
            raise StandardChangeRefused(
                f"a template makes a standard change, not a {new.category} one: send "
                "category standard, or a plan of your own"
            )
        return None
    if new.template is None:
        raise StandardChangeRefused(
            "a standard change names a template (`template`, `parameters`); any other plan is "
            "a normal change and needs approval"
        )
    if new.plan is not None:
        raise StandardChangeRefused(
            "a standard change's plan is built from its template: leave `plan` out"
        )
    if policies is None:
        raise StandardChangeRefused("standard changes cannot be made here")
    return build_standard_plan(
        session,
        policies.change,
        template_name=new.template,
        parameters=new.parameters,
        ci_names=new.ci_names,
        requester=Requester(new.requester, new.requester_roles, new.requester_groups),
    )


def load_change(session: Session, change_id: int) -> Change:
    change = session.get(Change, change_id)
    if change is None:
        raise LookupError(f"change {change_id} not found")
    return change


def edit_change(
    *, session: Session, change: Change, changes: dict[str, Any], actor: str
) -> str | None:
    """Apply edits, bump the version and void every outstanding link. Returns the flow run to
    cancel (the caller starts a new one for the new version)."""
    if change.status not in EDITABLE:
        raise ChangeError(f"{change.number} is {change.status.value}: it can no longer be edited")
    allowed = {
        "title",
        "description",
        "category",
        "ci_names",
        "plan",
        "planned_start",
        "planned_end",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise ChangeError(f"cannot edit {', '.join(sorted(unknown))}")
    _check_standard_edit(change, changes)
    if "plan" in changes:
        validate_plan(changes["plan"])
    for key, value in changes.items():
        setattr(change, key, value)
    change.version += 1
    change.status = ChangeStatus.submitted
    change.updated_at = clock.now()
    old_run, change.flow_run_id = change.flow_run_id, None
    session.add(change)
    assert change.id is not None
    voided = void_requests(session, change.id)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="edited",
        actor=actor,
        message=f"edited ({', '.join(sorted(changes))}); now version {change.version}; "
        f"{voided} outstanding approval links voided",
        data={"version": change.version, "fields": sorted(changes)},
    )
    return old_run


def _check_standard_edit(change: Change, changes: dict[str, Any]) -> None:
    """Only a template makes a standard change: an edit may not make a change standard, nor
    change what a standard change runs or touches (it may make it normal, then approved)."""
    category = changes.get("category", change.category)
    if category != "standard":
        return
    if change.category != "standard":
        raise StandardChangeRefused(
            "a change becomes standard only when submitted from a template (`template`, "
            "`parameters`); an edited plan stays a normal change"
        )
    fixed = sorted({"plan", "ci_names"} & set(changes))
    if fixed:
        raise StandardChangeRefused(
            f"a standard change's {' and '.join(fixed)} come from its template: submit a new "
            "one, or make this one normal (then it is approved)"
        )


def cancel_change(*, session: Session, change: Change, actor: str, note: str) -> str | None:
    if change.status not in EDITABLE:
        raise ChangeError(
            f"{change.number} is {change.status.value}: it can no longer be cancelled"
        )
    change.status = ChangeStatus.cancelled
    change.updated_at = clock.now()
    session.add(change)
    assert change.id is not None
    void_requests(session, change.id)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="cancelled",
        actor=actor,
        message=note or "cancelled",
    )
    return change.flow_run_id


def expire_change(*, session: Session, change: Change, actor: str, note: str) -> None:
    """The change ran out of time (for its approvals or its window): expired, on the record."""
    assert change.id is not None
    change.status = ChangeStatus.expired
    session.add(change)
    add_change_entry(
        session=session, change_id=change.id, kind="expired", actor=actor, message=note
    )


def void_requests(session: Session, change_id: int) -> int:
    """Void every undecided link of the change, and the codes mailed for them (edits,
    cancellation, expiry)."""
    now = clock.now()
    of_change = select(ApprovalRequest.id).where(col(ApprovalRequest.change_id) == change_id)
    session.execute(
        update(ApprovalCode)
        .where(
            col(ApprovalCode.request_id).in_(of_change),
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
        )
        .values(voided_at=now)
    )
    return session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.change_id) == change_id,
            col(ApprovalRequest.decision).is_(None),
            col(ApprovalRequest.voided_at).is_(None),
        )
        .values(voided_at=now)
    ).rowcount


def failed_changes_on(
    session: Session, ci_names: list[str], since: datetime, exclude: int | None
) -> int:
    rows = session.exec(
        select(Change).where(col(Change.status).in_(FAILED_OUTCOMES), Change.updated_at >= since)
    ).all()
    return sum(1 for c in rows if c.id != exclude and set(c.ci_names) & set(ci_names))


def assess(session: Session, change: Change, policies: Policies) -> RiskAssessment:
    policy = policies.change
    criticalities = [
        item.criticality
        for name in change.ci_names
        if (item := session.get(ConfigurationItem, name)) is not None
    ]
    plan = validate_plan(change.plan)
    return assess_risk(
        policy,
        category=change.category,
        ci_criticalities=criticalities,
        step_count=len(plan.steps),
        failed_changes=failed_changes_on(
            session, change.ci_names, clock.now() - policy.risk.history_window, change.id
        ),
        planned_start=change.planned_start or _expected_start(policy, change.category),
    )


def _expected_start(policy: ChangePolicy, category: str) -> datetime | None:
    """When a change without a planned start will run: the next allowed start (a freeze that
    raises the risk then counts; one that refuses is waited out, not refused)."""
    try:
        return next_allowed_start(policy, clock.now(), category=category)
    except NoAllowedStart:
        return None


def stages_for(change: Change, policies: Policies) -> list[ApprovalStage]:
    return approval_stages(policies.change, change.category, change.risk_level or "low")
