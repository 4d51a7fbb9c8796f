"""A stage blocked by segregation of duties, on the record; its override by a change manager;
and decisions refused for breaking the rules. Each works in the caller's transaction."""

from __future__ import annotations

from sqlmodel import Session, select

from itilflow.models import ApprovalRequest, Change, ChangeEntry, ChangeStatus, add_change_entry
from itilflow.policies import Policies
from itilflow.services.changes.approvals import ApprovalState, approval_state
from itilflow.services.changes.segregation import OVERRIDE_KIND
from itilflow.services.principals import Principal

BLOCKED_KIND = "segregation_blocked"
SKIPPED_KIND = "segregation_skipped"
REFUSED_KIND = "decision_refused"


class OverrideForbidden(PermissionError):
    """Only a change manager outside the conflict may override segregation of duties."""


class OverrideRefused(ValueError):
    """Nothing to override now, or no reason given; nothing recorded."""


def _whys(excluded: dict[str, str]) -> str:
    return "; ".join(f"{person} {why}" for person, why in sorted(excluded.items()))


def note_segregation(session: Session, change: Change, version: int, state: ApprovalState) -> None:
    """Say on the timeline, once per stage and version, who of the current stage is not asked
    under segregation of duties and why, and whether the stage now waits for a change
    manager's override (too few left to reach its quorum)."""
    stage = state.stage
    if not state.excluded or stage is None:
        return
    assert change.id is not None
    kind = BLOCKED_KIND if state.blocked else SKIPPED_KIND
    noted = session.exec(
        select(ChangeEntry).where(ChangeEntry.change_id == change.id, ChangeEntry.kind == kind)
    ).all()
    if any(e.data.get("version") == version and e.data.get("stage") == stage.name for e in noted):
        return
    message = f"{stage.name}: not asked under segregation of duties: {_whys(state.excluded)}"
    if state.blocked:
        message += (
            f"; {len(state.eligible)} of {len(stage.approvers)} approvers may decide, "
            f"{stage.needed} needed: waits for a change manager's override"
        )
    add_change_entry(
        session=session,
        change_id=change.id,
        kind=kind,
        actor="flow:change",
        message=message,
        data={"version": version, "stage": stage.name, "excluded": state.excluded},
    )


def override_segregation(
    session: Session, change: Change, by: Principal, reason: str, policies: Policies
) -> list[str]:
    """Let the people segregation of duties keeps out of the change's blocked stage decide
    there, on the record with `by` and `reason`. Returns who was let through.

    OverrideForbidden unless `by` is a change manager outside the conflict; OverrideRefused
    without a reason or when no stage is waiting for an override."""
    if not by.has("change_manager"):
        raise OverrideForbidden(f"{by.name} is not a change manager: only one may override")
    reason = reason.strip()
    if not reason:
        raise OverrideRefused("a reason is required: it goes on the change's record")
    state = (
        approval_state(session, change, change.version, policies)
        if change.status == ChangeStatus.awaiting_approval
        else None
    )
    if state is None or not state.blocked or state.stage is None:
        raise OverrideRefused(f"{change.number} is not waiting for a segregation override")
    if by.name in state.excluded:
        raise OverrideForbidden(
            f"{by.name} {state.excluded[by.name]}: another change manager must override"
        )
    assert change.id is not None
    people = sorted(state.excluded)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind=OVERRIDE_KIND,
        actor=by.name,
        message=f"{state.stage.name}: segregation of duties overridden for "
        f"{_whys(state.excluded)}: {reason}",
        data={
            "version": change.version,
            "stage": state.stage.name,
            "people": people,
            "reason": reason[:2000],
        },
    )
    return people


def record_refusal(
    session: Session, request: ApprovalRequest, decision: str, why: str, *, actor: str, via: str
) -> None:
    """A decision refused for breaking segregation of duties, on the change's timeline."""
    add_change_entry(
        session=session,
        change_id=request.change_id,
        kind=REFUSED_KIND,
        actor=actor,
        message=f"{request.stage}: '{decision}' by {request.approver} via {via} refused: {why}",
        data={"stage": request.stage, "request": request.id, "via": via, "rule": "segregation"},
    )
