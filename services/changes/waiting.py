"""Changes waiting for decisions: no run holds them, so these rules say, from the rows alone,
which one is overdue (its stage unanswered for `expire_after`) and which one needs a run now (a
decision that no run took up, a stage whose approvers were not asked yet)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from itilflow.models import ApprovalRequest, Change, ChangeStatus
from itilflow.policies import Policies
from itilflow.services.changes.approvals import ApprovalState, approval_state

WAITING = (ChangeStatus.submitted, ChangeStatus.awaiting_approval)


def waiting_changes(session: Session) -> list[Change]:
    """Every change that waits for its assessment or for decisions."""
    return list(session.exec(select(Change).where(col(Change.status).in_(WAITING))).all())


def stage_asked_at(
    session: Session, change: Change, stage: str, policies: Policies
) -> datetime | None:
    """When the stage's first live request of the current version was made (its link's expiry
    less the links' validity): the stage waits `expire_after` from then, whatever came since."""
    assert change.id is not None
    first_expiry = session.exec(
        select(ApprovalRequest.expires_at)
        .where(
            col(ApprovalRequest.change_id) == change.id,
            col(ApprovalRequest.version) == change.version,
            col(ApprovalRequest.stage) == stage,
            col(ApprovalRequest.voided_at).is_(None),
        )
        .order_by(col(ApprovalRequest.expires_at))
    ).first()
    if first_expiry is None:
        return None
    return first_expiry - policies.change.timing.link_valid_for


def is_overdue(
    session: Session, change: Change, state: ApprovalState, policies: Policies, now: datetime
) -> bool:
    """The stage waiting for decisions was asked `expire_after` ago or more."""
    if change.status != ChangeStatus.awaiting_approval or state.outcome != "pending":
        return False
    assert state.stage is not None
    asked = stage_asked_at(session, change, state.stage.name, policies)
    return asked is not None and asked + policies.change.timing.expire_after <= now


def why_it_needs_a_run(change: Change, state: ApprovalState) -> str | None:
    """Why the change cannot go on waiting without a run, or None when it waits for people."""
    if change.status == ChangeStatus.submitted:
        return "stored but not yet assessed"
    if state.outcome in ("approved", "rejected"):
        return f"{state.outcome} while no run was there to carry it on"
    if state.outcome == "pending" and not state.blocked:
        unasked = [a for a in state.eligible if a not in state.asked]
        if unasked:
            return f"{', '.join(unasked)} not asked yet"
    return None


def state_of(session: Session, change: Change, policies: Policies) -> ApprovalState:
    return approval_state(session, change, change.version, policies)
