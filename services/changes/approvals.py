"""Approvals: the signed links, the one-time codes and the decision.

Approval decisions are taken by one conditional UPDATE: the request must be undecided, not
voided, for the change's current version, while the change awaits approval, and not expired.
A replayed, stale or late link therefore changes nothing, whatever order things happen in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import delete, exists, func, update
from sqlmodel import Session, col, select

from itilflow import clock, signing
from itilflow.models import (
    EDITABLE,
    ApprovalCode,
    ApprovalRequest,
    Change,
    ChangeStatus,
    add_change_entry,
    list_approval_requests,
)
from itilflow.policies import (
    ApprovalLinks,
    ApprovalStage,
    Policies,
    Segregation,
    stage_outcome,
)
from itilflow.services.changes.errors import (
    CodeNotSent,
    DecisionRefused,
    SegregationRefused,
    WrongCode,
)
from itilflow.services.changes.link_lock import LOCKED, refuse_past_the_cap
from itilflow.services.changes.requests import APPROVAL_PURPOSE, load_change, stages_for
from itilflow.services.changes.segregation import conflict_of, overrides_of, segregate


@dataclass(frozen=True)
class ApprovalState:
    outcome: Literal["approved", "rejected", "pending", "stale"]
    stage: ApprovalStage | None  # the stage waiting for decisions
    asked: list[str]  # approvers of that stage who already have a live request
    # Who of that stage may be asked under segregation of duties, who may not (and why).
    eligible: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    # Too few may decide to reach the quorum: the stage waits for a change manager's override.
    blocked: bool = False


def approval_state(
    session: Session, change: Change, version: int, policies: Policies
) -> ApprovalState:
    """Where the approvals of this version stand, stage by stage, under segregation of duties:
    decisions by people who may not decide in a stage do not count there."""
    if change.version != version or change.status not in EDITABLE:
        return ApprovalState("stale", None, [])
    assert change.id is not None
    requests = list_approval_requests(session=session, change_id=change.id, version=version)
    overrides = overrides_of(session, change.id, version)
    deciders: dict[str, str] = {}  # who decided in an earlier stage, and where
    for stage in stages_for(change, policies):
        view = segregate(
            stage,
            requester=change.requester,
            deciders=deciders,
            overridden=overrides.get(stage.name, set()),
            policy=policies.change.segregation,
        )
        of_stage = [r for r in requests if r.stage == stage.name]
        decided = sorted((r for r in of_stage if r.decision), key=lambda r: r.decided_at)
        decisions = {r.approver: r.decision for r in decided if r.approver in view.eligible}
        # Blocked: counted as if the override came, so a rejection that no override could
        # outweigh ends the change now.
        outcome = stage_outcome(view.counted or stage, decisions)  # type: ignore[arg-type]
        if outcome == "rejected":
            return ApprovalState("rejected", stage, [])
        live = [r.approver for r in of_stage if r.voided_at is None]
        if view.counted is None or outcome == "pending":
            blocked = view.counted is None
            return ApprovalState("pending", stage, live, view.eligible, view.excluded, blocked)
        for request in decided:
            if request.approver in view.eligible:  # a vote that did not count binds no one
                deciders.setdefault(request.approver, stage.name)
    return ApprovalState("approved", None, [])


def create_approval_request(
    *, session: Session, change: Change, stage: str, approver: str, policies: Policies
) -> ApprovalRequest:
    assert change.id is not None
    request = ApprovalRequest(
        change_id=change.id,
        version=change.version,
        stage=stage,
        approver=approver,
        nonce=secrets.token_urlsafe(16),
        expires_at=clock.now() + policies.change.timing.link_valid_for,
    )
    session.add(request)
    session.flush()
    return request


def approval_token(request: ApprovalRequest, *, secret: str, policies: Policies) -> str:
    return signing.sign(
        {
            "request": request.id,
            "nonce": request.nonce,
            "change": request.change_id,
            "version": request.version,
            "approver": request.approver,
        },
        secret=secret,
        purpose=APPROVAL_PURPOSE,
        valid_for=policies.change.timing.link_valid_for,
    )


def read_token(session: Session, token: str, *, secret: str) -> tuple[ApprovalRequest, Change]:
    """The request and change a link names; DecisionRefused when it is not a valid link."""
    try:
        payload = signing.verify(token, secret=secret, purpose=APPROVAL_PURPOSE)
    except signing.BadToken as exc:
        raise DecisionRefused(str(exc)) from exc
    request = session.get(ApprovalRequest, payload.get("request"))
    if (
        request is None
        or request.nonce != payload.get("nonce")
        or request.approver != payload.get("approver")
        or request.change_id != payload.get("change")
        or request.version != payload.get("version")
    ):
        raise DecisionRefused("the link does not match any approval request")
    return request, load_change(session, request.change_id)


def why_not_open(request: ApprovalRequest, change: Change) -> str | None:
    if request.decision is not None:
        return f"this link was already used: {request.approver} decided '{request.decision}'"
    if request.locked_at is not None:
        return LOCKED
    if request.voided_at is not None or change.version != request.version:
        return f"{change.number} was changed after this link was sent; a new link will follow"
    if change.status != ChangeStatus.awaiting_approval:
        return f"{change.number} is {change.status.value.replace('_', ' ')}: no decision is needed"
    if request.expires_at <= clock.now():
        return "the link has expired"
    return None


def check_segregation(session: Session, request: ApprovalRequest, policy: Segregation) -> None:
    """SegregationRefused when the request's approver may not decide it (nothing changed)."""
    why = conflict_of(session, request, load_change(session, request.change_id), policy)
    if why is not None:
        raise SegregationRefused(why)


def decide(
    *,
    session: Session,
    request: ApprovalRequest,
    decision: str,
    comment: str,
    via: str,
    segregation: Segregation | None = None,
) -> None:
    """Record one decision atomically; DecisionRefused (and nothing changed) if it may not,
    SegregationRefused when it breaks segregation of duties (the policy's, on by default)."""
    if decision not in ("approve", "reject"):
        raise DecisionRefused(f"unknown decision {decision!r}: expected approve or reject")
    # One decision of a change at a time (PostgreSQL; SQLite writes one at a time anyway): two
    # votes by one person in two stages at once cannot both pass the check below.
    session.execute(select(Change.id).where(Change.id == request.change_id).with_for_update())
    check_segregation(session, request, segregation or Segregation())
    now = clock.now()
    change_is_waiting = exists().where(
        col(Change.id) == request.change_id,
        col(Change.version) == request.version,
        col(Change.status) == ChangeStatus.awaiting_approval,
    )
    result = session.execute(
        update(ApprovalRequest)
        .where(
            col(ApprovalRequest.id) == request.id,
            col(ApprovalRequest.nonce) == request.nonce,
            col(ApprovalRequest.decision).is_(None),
            col(ApprovalRequest.voided_at).is_(None),
            col(ApprovalRequest.locked_at).is_(None),
            col(ApprovalRequest.expires_at) > now,
            change_is_waiting,
        )
        .values(decision=decision, decided_at=now, decided_via=via, comment=comment[:2000])
    )
    if result.rowcount != 1:
        session.rollback()
        fresh_request = session.get(ApprovalRequest, request.id)
        change = session.get(Change, request.change_id)
        assert fresh_request is not None and change is not None
        session.refresh(fresh_request)
        session.refresh(change)
        raise DecisionRefused(why_not_open(fresh_request, change) or "the decision was refused")
    add_change_entry(
        session=session,
        change_id=request.change_id,
        kind=f"{decision}d",
        actor=request.approver,
        message=f"{request.stage}: {decision}d by {request.approver} via {via}"
        + (f": {comment}" if comment else ""),
        data={"stage": request.stage, "version": request.version, "via": via},
    )


CODE_DIGITS = 6


def _code_hash(secret: str, request: ApprovalRequest, decision: str, code: str) -> str:
    # Keyed and bound to the link (request, nonce) and the decision: a stolen database cannot
    # test the million codes without the key, and a code asked for "approve" cannot reject.
    message = f"{request.id}:{request.nonce}:{decision}:{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def code_matches(live: ApprovalCode, request: ApprovalRequest, code: str, *, secret: str) -> bool:
    """Whether `code` is the live code `live` of `request` (constant time); counts nothing."""
    entered = _code_hash(secret, request, live.decision, "".join(code.split()))
    return hmac.compare_digest(entered.encode(), live.code_hash.encode())


def issue_approval_code(
    *,
    session: Session,
    request: ApprovalRequest,
    decision: str,
    secret: str,
    policy: ApprovalLinks,
) -> tuple[ApprovalCode, str]:
    """A new one-time code for this link and decision, voiding the older ones. Returns the row
    and the code in clear (to mail; only its hash is stored).

    CodeNotSent when one was issued less than `code_resend_after` ago.
    """
    if decision not in ("approve", "reject"):
        raise DecisionRefused(f"unknown decision {decision!r}: expected approve or reject")
    refuse_past_the_cap(session, request, policy)
    now = clock.now()
    row = ApprovalCode(
        request_id=request.id,
        decision=decision,
        code_hash="",
        created_at=now,
        expires_at=now + policy.code_valid_for,
    )
    session.add(row)
    session.flush()
    # Counted after the insert: of two presses at once, the later writer sees both and yields.
    recent = session.execute(
        select(func.count())
        .select_from(ApprovalCode)
        .where(
            col(ApprovalCode.request_id) == request.id,
            col(ApprovalCode.created_at) > now - policy.code_resend_after,
        )
    ).scalar_one()
    if recent > 1:
        session.rollback()
        raise CodeNotSent("a code was sent less than a minute ago")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    row.code_hash = _code_hash(secret, request, decision, code)
    session.add(row)
    session.execute(
        update(ApprovalCode)
        .where(
            col(ApprovalCode.request_id) == request.id,
            col(ApprovalCode.id) != row.id,
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
        )
        .values(voided_at=now)
    )
    return row, code


def withdraw_approval_code(*, session: Session, code_id: int) -> None:
    """Forget a code whose mail could not be sent, so the approver may ask again at once."""
    session.execute(delete(ApprovalCode).where(col(ApprovalCode.id) == code_id))


def decide_by_link(
    *,
    session: Session,
    request: ApprovalRequest,
    decision: str,
    comment: str,
    code: str,
    secret: str,
    policy: ApprovalLinks,
    segregation: Segregation | None = None,
) -> None:
    """Take an approval link's decision in the caller's transaction. With `confirm_by_code` the
    code is consumed first, so a double click decides once and a code asked to approve cannot
    reject. WrongCode: the attempt is counted and the caller commits it; DecisionRefused: the
    caller rolls back. Segregation of duties is checked before the code is."""
    check_segregation(session, request, segregation or Segregation())
    if request.locked_at is not None:
        raise DecisionRefused(LOCKED)
    if policy.confirm_by_code:
        consume_approval_code(
            session=session,
            request=request,
            decision=decision,
            code=code,
            secret=secret,
            policy=policy,
        )
    decide(
        session=session,
        request=request,
        decision=decision,
        comment=comment,
        via="link",
        segregation=segregation,
    )


def live_code_of(session: Session, request: ApprovalRequest) -> ApprovalCode | None:
    """The request's newest code that is neither used nor voided (expiry and tries unchecked)."""
    return session.exec(
        select(ApprovalCode)
        .where(
            ApprovalCode.request_id == request.id,
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
        )
        .order_by(col(ApprovalCode.id).desc())
    ).first()


def consume_approval_code(
    *,
    session: Session,
    request: ApprovalRequest,
    decision: str,
    code: str,
    secret: str,
    policy: ApprovalLinks,
) -> None:
    """Use the request's live code for `decision`, once; the caller decides in the same
    transaction. WrongCode (attempt counted) or DecisionRefused when it may not."""
    now = clock.now()
    live = live_code_of(session, request)
    if live is None or live.attempts >= policy.code_attempts or live.expires_at <= now:
        raise DecisionRefused(
            "there is no valid code for this link (expired, used or void): "
            "press the button for a new one"
        )
    if live.decision != decision:
        raise DecisionRefused(
            f"this code was asked to {live.decision}, not to {decision}: "
            f"press {decision.capitalize()} for a code of its own"
        )
    entered = "".join(code.split())
    # Constant time, as bytes (compare_digest refuses non-ASCII str).
    if not hmac.compare_digest(
        _code_hash(secret, request, decision, entered).encode(), live.code_hash.encode()
    ):
        left = policy.code_attempts - live.attempts - 1  # read before the UPDATE syncs it
        session.execute(
            update(ApprovalCode)
            .where(col(ApprovalCode.id) == live.id)
            .values(attempts=ApprovalCode.attempts + 1)
        )
        raise WrongCode(
            f"the code is wrong: {left} attempt{'s' if left != 1 else ''} left"
            if left > 0
            else "the code is wrong and now void: press the button for a new one",
            attempts_left=left,
        )
    used = session.execute(
        update(ApprovalCode)
        .where(
            col(ApprovalCode.id) == live.id,
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
            col(ApprovalCode.attempts) < policy.code_attempts,
            col(ApprovalCode.expires_at) > now,
        )
        .values(used_at=now)
    )
    if used.rowcount != 1:
        raise DecisionRefused("the code was already used")


def mask_address(address: str) -> str:
    """`chen@example.com` -> `c***@example.com`: enough to recognise, not to harvest."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


def pending_request_for(
    session: Session, change: Change, approver: str, stage: str
) -> ApprovalRequest | None:
    assert change.id is not None
    for request in list_approval_requests(
        session=session, change_id=change.id, version=change.version
    ):
        if (
            request.approver == approver
            and request.stage == stage
            and request.decision is None
            and request.voided_at is None
        ):
            return request
    return None
