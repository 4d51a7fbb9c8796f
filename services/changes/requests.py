"""What can happen to a change, the same from the API, the Prefect UI and the flows.

Approval decisions are taken by one conditional UPDATE: the request must be undecided, not
voided, for the change's current version, while the change awaits approval, and not expired.
A replayed, stale or late link therefore changes nothing, whatever order things happen in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, exists, func, update
from sqlmodel import Session, col, select

from itilflow import clock, signing
from itilflow.executors.change_steps import ChangePlan
from itilflow.models import (
    EDITABLE,
    ApprovalCode,
    ApprovalRequest,
    Change,
    ChangeEntry,
    ChangeStatus,
    ConfigurationItem,
    add_change_entry,
    list_approval_requests,
)
from itilflow.policies import (
    ApprovalLinks,
    ApprovalStage,
    Policies,
    RiskAssessment,
    approval_stages,
    assess_risk,
    stage_outcome,
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


class DecisionRefused(ValueError):
    """An approval link or form that may not decide; the reason is shown to the person."""


class WrongCode(DecisionRefused):
    """The code entered does not match; the attempt is counted (the caller commits it)."""

    def __init__(self, message: str, *, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left


class CodeNotSent(DecisionRefused):
    """No new code now: one was sent less than `code_resend_after` ago."""


@dataclass
class NewChange:
    title: str
    plan: dict[str, Any]
    description: str = ""
    category: Literal["standard", "normal", "emergency"] = "normal"
    ci_names: list[str] = field(default_factory=list)
    planned_start: datetime | None = None
    planned_end: datetime | None = None
    requester: str = "api"
    requester_email: str | None = None


def validate_plan(plan: dict[str, Any]) -> ChangePlan:
    return ChangePlan.model_validate(plan)


def submit_change(*, session: Session, new: NewChange, actor: str) -> Change:
    validate_plan(new.plan)
    if new.planned_start and new.planned_end and new.planned_end <= new.planned_start:
        raise ChangeError("planned_end must be after planned_start")
    change = Change(
        title=new.title,
        description=new.description,
        category=new.category,
        ci_names=new.ci_names,
        plan=new.plan,
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
        message=f"{new.category} change submitted",
        data={"version": 1},
    )
    return change


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
        planned_start=change.planned_start,
    )


def stages_for(change: Change, policies: Policies) -> list[ApprovalStage]:
    return approval_stages(policies.change, change.category, change.risk_level or "low")


@dataclass(frozen=True)
class ApprovalState:
    outcome: Literal["approved", "rejected", "pending", "stale"]
    stage: ApprovalStage | None  # the stage waiting for decisions
    asked: list[str]  # approvers of that stage who already have a live request


def approval_state(
    session: Session, change: Change, version: int, policies: Policies
) -> ApprovalState:
    """Where the approvals of this version stand, stage by stage."""
    if change.version != version or change.status not in EDITABLE:
        return ApprovalState("stale", None, [])
    assert change.id is not None
    requests = list_approval_requests(session=session, change_id=change.id, version=version)
    for stage in stages_for(change, policies):
        of_stage = [r for r in requests if r.stage == stage.name]
        decided = sorted((r for r in of_stage if r.decision), key=lambda r: r.decided_at)
        decisions = {r.approver: r.decision for r in decided}
        outcome = stage_outcome(stage, decisions)  # type: ignore[arg-type]
        if outcome == "rejected":
            return ApprovalState("rejected", stage, [])
        if outcome == "pending":
            live = [r.approver for r in of_stage if r.voided_at is None]
            return ApprovalState("pending", stage, live)
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
    if request.voided_at is not None or change.version != request.version:
        return f"{change.number} was changed after this link was sent; a new link will follow"
    if change.status != ChangeStatus.awaiting_approval:
        return f"{change.number} is {change.status.value.replace('_', ' ')}: no decision is needed"
    if request.expires_at <= clock.now():
        return "the link has expired"
    return None


def decide(
    *, session: Session, request: ApprovalRequest, decision: str, comment: str, via: str
) -> None:
    """Record one decision atomically; DecisionRefused (and nothing changed) if it may not."""
    if decision not in ("approve", "reject"):
        raise DecisionRefused(f"unknown decision {decision!r}: expected approve or reject")
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
    live = session.exec(
        select(ApprovalCode)
        .where(
            ApprovalCode.request_id == request.id,
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
        )
        .order_by(col(ApprovalCode.id).desc())
    ).first()
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


# A run that dies with these statuses left the change half done: it is taken over and rolled back.
MID_IMPLEMENTATION = (ChangeStatus.implementing, ChangeStatus.crashed)
# A run that dies with these statuses was waiting for decisions: the process is started again.
AWAITING_DECISIONS = (ChangeStatus.submitted, ChangeStatus.awaiting_approval)


def take_over_change(
    *, session: Session, change_id: int, lost_run_id: str, new_run_id: str | None
) -> bool:
    """Make `new_run_id` the change's run if `lost_run_id` still is, in one conditional UPDATE.

    The run id on the change is the fence: every action of the implementation checks it first, so
    once a recovery took over, a run wrongly declared lost stops at its next action; and of two
    recoveries of the same lost run, only one wins.
    """
    result = session.execute(
        update(Change)
        .where(
            col(Change.id) == change_id,
            col(Change.flow_run_id) == lost_run_id,
            col(Change.status).in_(MID_IMPLEMENTATION + AWAITING_DECISIONS),
        )
        .values(flow_run_id=new_run_id, updated_at=clock.now())
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class Interruption:
    """Where the latest implementation attempt stood, read from the change's timeline."""

    started_steps: list[str]
    """Implementation steps that started (finished or not), in the order they started."""
    in_flight: tuple[str, str] | None
    """(phase, name) of the action that started and never recorded a result, if any."""


def read_interruption(entries: list[ChangeEntry]) -> Interruption:
    """What a lost run had done: the entries since the latest `implementation_started`."""
    latest = max(
        (i for i, e in enumerate(entries) if e.kind == "implementation_started"), default=-1
    )
    started_steps: list[str] = []
    open_actions: dict[tuple[str, str], int] = {}
    for entry in entries[latest + 1 :]:
        phase, name = entry.data.get("phase"), entry.data.get("name")
        if not phase or not name:
            continue
        key = (phase, name)
        if entry.kind == f"{phase}_started":
            open_actions[key] = open_actions.get(key, 0) + 1
            if phase == "step" and name not in started_steps:
                started_steps.append(name)
        elif entry.kind in (f"{phase}_ok", f"{phase}_failed") and open_actions.get(key):
            open_actions[key] -= 1
    in_flight = next((key for key, count in reversed(open_actions.items()) if count), None)
    return Interruption(started_steps=started_steps, in_flight=in_flight)
