"""Segregation of duties (change.yaml `segregation`): who may not approve a change.

A change's requester is never asked to approve it, and a person counts once across a change's
stages: who decided in one stage is not asked in a later one. A stage left without enough
eligible approvers waits for a change manager's override (services/changes/overrides.py), a
timeline entry of kind `segregation_override` that lets the people it names decide in that
stage of that version. The same rules refuse a decision that breaks them, however it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlmodel import Session, col, select

from itilflow.models import ApprovalRequest, Change, ChangeEntry
from itilflow.policies import ApprovalStage, Segregation

OVERRIDE_KIND = "segregation_override"


@dataclass(frozen=True)
class StageView:
    """A stage under segregation of duties: who may decide, who may not (and why), and the
    stage whose quorum counts, or None when too few may decide to reach it (blocked)."""

    eligible: list[str]
    excluded: dict[str, str]
    counted: ApprovalStage | None


def segregate(
    stage: ApprovalStage,
    *,
    requester: str,
    deciders: Mapping[str, str],
    overridden: set[str],
    policy: Segregation,
) -> StageView:
    """Apply the rules to one stage. `deciders` maps who decided in an earlier stage of this
    version to that stage; `overridden` are the people a change manager let through here."""
    excluded: dict[str, str] = {}
    for person in stage.approvers:
        if person in overridden:
            continue
        if person == requester and not policy.requester_may_approve:
            excluded[person] = "requested the change"
        elif person in deciders and policy.one_vote_per_person:
            excluded[person] = f"decided in stage {deciders[person]}"
    eligible = [person for person in stage.approvers if person not in excluded]
    if not excluded:
        return StageView(eligible, excluded, stage)
    if not eligible or len(eligible) < stage.needed:
        return StageView(eligible, excluded, None)
    # Quorum `all` with anyone excluded was blocked above: `any` or N of the eligible remain.
    counted = ApprovalStage(name=stage.name, approvers=eligible, quorum=stage.quorum)
    return StageView(eligible, excluded, counted)


def overrides_of(session: Session, change_id: int, version: int) -> dict[str, set[str]]:
    """The people a change manager let through, by stage, for this version of the change."""
    entries = session.exec(
        select(ChangeEntry).where(
            ChangeEntry.change_id == change_id, ChangeEntry.kind == OVERRIDE_KIND
        )
    )
    through: dict[str, set[str]] = {}
    for entry in entries:
        if entry.data.get("version") == version:
            through.setdefault(entry.data["stage"], set()).update(entry.data.get("people", []))
    return through


def conflict_of(
    session: Session, request: ApprovalRequest, change: Change, policy: Segregation
) -> str | None:
    """Why the approver of `request` may not decide it, or None when they may."""
    assert change.id is not None
    if request.approver in overrides_of(session, change.id, request.version).get(request.stage, ()):
        return None
    if request.approver == change.requester and not policy.requester_may_approve:
        return (
            f"{request.approver} requested {change.number}: a requester does not approve "
            "their own change (segregation of duties)"
        )
    if policy.one_vote_per_person:
        other = session.exec(
            select(ApprovalRequest).where(
                ApprovalRequest.change_id == request.change_id,
                ApprovalRequest.version == request.version,
                ApprovalRequest.approver == request.approver,
                ApprovalRequest.stage != request.stage,
                col(ApprovalRequest.decision).is_not(None),
            )
        ).first()
        if other is not None:
            return (
                f"{request.approver} decided in stage {other.stage} of {change.number} "
                "already: a person counts once across a change's stages (segregation of duties)"
            )
    return None
