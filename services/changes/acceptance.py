"""The requester's acceptance of an implemented change (change.yaml `acceptance`).

The engineers verify stability (the plan's verification checks); when they pass and acceptance
is required, the change waits in `awaiting_signoff` and its requester gets a signed link. The
link names one acceptance request: an ApprovalRequest row of the stage "acceptance" whose
`approver` is the requester, so the one-time codes, their caps and their locking are the
approval links' own (the code's decision is stored as approve or reject). Its token has a
purpose of its own: an acceptance link opens no approval page, nor the other way round.

Who may decide: the requester (signed in, or by the code mailed to their address on record),
or a change manager on their behalf, recorded as such. Accept closes the change (successful);
reject needs a reason and, by the policy, reopens the change as a new version or closes it as
customer_rejected. A window that lapses closes it as accepted by lapse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import update
from sqlmodel import Session, col, select

from itilflow import clock, signing
from itilflow.models import (
    ApprovalRequest,
    Change,
    ChangeStatus,
    add_change_entry,
    get_engineer,
)
from itilflow.policies import Policies
from itilflow.services.changes.errors import DecisionRefused
from itilflow.services.changes.requests import load_change, void_requests
from itilflow.services.principals import Principal

ACCEPTANCE_PURPOSE = "acceptance"
STAGE = "acceptance"
# The code rows store approve or reject: the approval links' code machinery knows no others.
CODE_DECISION = {"accept": "approve", "reject": "reject"}
Decision = Literal["accept", "reject"]
LATE_CLICKS = timedelta(days=30)


class ReasonRequired(DecisionRefused):
    """A rejection without a reason: the engineers must know what does not work."""


@dataclass(frozen=True)
class Decider:
    """Who decides: the requester themselves, or a change manager on their behalf."""

    name: str
    on_behalf: bool = False


def ask_for_acceptance(*, session: Session, change: Change, policies: Policies) -> ApprovalRequest:
    """The change, verified, waits for its requester: the engineers' verification goes on the
    timeline, and one acceptance request (the link's row) is made. The caller commits."""
    assert change.id is not None
    review = change.review or {}
    checks = [a["name"] for a in review.get("actions", []) if a.get("phase") == "verify"]
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="verified",
        actor="flow:implement-change",
        message="engineers' verification passed"
        + (f": {', '.join(checks)}" if checks else " (the plan has no checks)"),
        data={"checks": checks},
    )
    change.status = ChangeStatus.awaiting_signoff
    change.updated_at = clock.now()
    session.add(change)
    window = policies.change.acceptance.window
    request = ApprovalRequest(
        change_id=change.id,
        version=change.version,
        stage=STAGE,
        approver=change.requester,
        nonce=secrets.token_urlsafe(16),
        expires_at=clock.now() + window,
    )
    session.add(request)
    session.flush()
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="acceptance_requested",
        actor="flow:implement-change",
        message=f"{change.requester} is asked to accept by {request.expires_at:%Y-%m-%d %H:%M %Z}",
        data={"request": request.id, "until": request.expires_at.isoformat()},
    )
    return request


def acceptance_token(request: ApprovalRequest, *, secret: str) -> str:
    return signing.sign(
        {
            "request": request.id,
            "nonce": request.nonce,
            "change": request.change_id,
            "version": request.version,
            "requester": request.approver,
        },
        secret=secret,
        purpose=ACCEPTANCE_PURPOSE,
        # Past the window the row refuses it; the token lives on so that a late click hears why.
        valid_for=request.expires_at - clock.now() + LATE_CLICKS,
    )


def read_acceptance_token(
    session: Session, token: str, *, secret: str
) -> tuple[ApprovalRequest, Change]:
    """The request and change an acceptance link names; DecisionRefused for any other link."""
    try:
        payload = signing.verify(token, secret=secret, purpose=ACCEPTANCE_PURPOSE)
    except signing.BadToken as exc:
        raise DecisionRefused(str(exc)) from exc
    request = session.get(ApprovalRequest, payload.get("request"))
    if (
        request is None
        or request.stage != STAGE
        or request.nonce != payload.get("nonce")
        or request.approver != payload.get("requester")
        or request.change_id != payload.get("change")
        or request.version != payload.get("version")
    ):
        raise DecisionRefused("the link does not match any acceptance request")
    return request, load_change(session, request.change_id)


def why_not_open(
    request: ApprovalRequest, change: Change, now: datetime | None = None
) -> str | None:
    if request.decision is not None:
        word = "accepted" if request.decision == "approve" else "rejected"
        return f"this link was already used: {change.number} was {word}"
    if request.locked_at is not None:
        return "this link is locked after too many codes: ask the change manager"
    if request.voided_at is not None or change.version != request.version:
        return f"{change.number} was changed after this link was sent"
    if change.status != ChangeStatus.awaiting_signoff:
        return (
            f"{change.number} is {change.status.value.replace('_', ' ')}: no acceptance is needed"
        )
    if request.expires_at <= (now or clock.now()):
        return "the acceptance window has lapsed: the change counts as accepted"
    return None


def decider_for(person: Principal | None, request: ApprovalRequest) -> Decider | None:
    """Who a signed-in browser decides as: the requester, or a change manager on their behalf;
    None for anyone else (and for no one signed in: the mailed code then proves the requester)."""
    if person is None:
        return None
    if person.name == request.approver:
        return Decider(person.name)
    if person.has("change_manager"):
        return Decider(person.name, on_behalf=True)
    return None


def code_address(session: Session, change: Change) -> str | None:
    """Where the requester's code goes: their address in the people data, else the address the
    change was requested with."""
    engineer = get_engineer(session=session, username=change.requester)
    return engineer.email if engineer and engineer.email else change.requester_email


def decide_acceptance(
    *,
    session: Session,
    request: ApprovalRequest,
    decision: str,
    reason: str,
    decider: Decider,
    via: str,
    policies: Policies,
) -> str:
    """Take the requester's decision atomically (a replayed or late link changes nothing) and
    apply it. Returns the change's outcome: accepted, reopened or customer_rejected. The caller
    commits; DecisionRefused (nothing changed) when it may not."""
    reason = reason.strip()
    if decision not in CODE_DECISION:
        raise DecisionRefused(f"unknown decision {decision!r}: expected accept or reject")
    if decision == "reject" and not reason:
        raise ReasonRequired("a rejection needs a reason: say what does not work")
    now = clock.now()
    taken = session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.id) == request.id,
            col(ApprovalRequest.decision).is_(None),
            col(ApprovalRequest.voided_at).is_(None),
            col(ApprovalRequest.locked_at).is_(None),
            col(ApprovalRequest.expires_at) > now,
        )
        .values(
            decision=CODE_DECISION[decision], decided_at=now, decided_via=via, comment=reason[:2000]
        )
    )
    change = load_change(session, request.change_id)
    if taken.rowcount != 1 or change.status != ChangeStatus.awaiting_signoff:
        session.rollback()
        fresh = session.get(ApprovalRequest, request.id)
        change = load_change(session, request.change_id)
        assert fresh is not None
        session.refresh(fresh)
        session.refresh(change)
        raise DecisionRefused(why_not_open(fresh, change) or "the decision was refused")
    who = decider.name + (f" on behalf of {request.approver}" if decider.on_behalf else "")
    data = {"by": decider.name, "requester": request.approver, "on_behalf": decider.on_behalf}
    if decision == "accept":
        _close(
            session,
            change,
            ChangeStatus.successful,
            "accepted",
            f"accepted by {who} via {via}",
            data | {"via": via},
        )
        return "accepted"
    message = f"rejected by {who} via {via}: {reason}"
    if policies.change.acceptance.on_reject == "close":
        _close(
            session,
            change,
            ChangeStatus.customer_rejected,
            "customer_rejected",
            message,
            data | {"via": via, "reason": reason},
        )
        return "customer_rejected"
    reopen(session, change, message, data | {"via": via, "reason": reason})
    return "reopened"


def _close(
    session: Session, change: Change, status: ChangeStatus, kind: str, message: str, data: dict
) -> None:
    assert change.id is not None
    change.status = status
    change.updated_at = clock.now()
    session.add(change)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind=kind,
        actor=data["by"],
        message=message,
        data=data,
    )


def reopen(session: Session, change: Change, message: str, data: dict) -> None:
    """Back to `submitted` as a new version (as an edit does): its next run assesses it and asks
    for its approvals again, and its plan may be edited meanwhile."""
    assert change.id is not None
    change.version += 1
    change.status = ChangeStatus.submitted
    change.updated_at = clock.now()
    change.flow_run_id = None
    session.add(change)
    void_requests(session, change.id)
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="customer_rejected",
        actor=data["by"],
        message=message,
        data=data,
    )
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="reopened",
        actor="policy:change.acceptance",
        message=f"reopened as version {change.version}: it is assessed, approved and "
        "implemented again",
        data={"version": change.version},
    )


def lapsed_acceptances(session: Session, now: datetime) -> list[Change]:
    """The changes awaiting sign-off whose acceptance window ended."""
    rows = session.exec(
        select(Change, ApprovalRequest)
        .join(ApprovalRequest, col(ApprovalRequest.change_id) == col(Change.id))
        .where(
            col(Change.status) == ChangeStatus.awaiting_signoff,
            col(ApprovalRequest.stage) == STAGE,
            col(ApprovalRequest.version) == col(Change.version),
            col(ApprovalRequest.decision).is_(None),
            col(ApprovalRequest.expires_at) <= now,
        )
    ).all()
    return list({change.id: change for change, _ in rows}.values())


def accept_by_lapse(session: Session, change: Change) -> None:
    """Close a change whose window lapsed without an answer: accepted by lapse, on the record."""
    assert change.id is not None
    void_requests(session, change.id)
    _close(
        session,
        change,
        ChangeStatus.successful,
        "accepted_by_lapse",
        f"accepted by lapse: {change.requester} did not answer within the acceptance window",
        {"by": "policy:change.acceptance", "requester": change.requester},
    )
