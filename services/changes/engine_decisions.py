"""Decisions that reach a paused change run through the engine (Prefect's resume).

Prefect OSS has no users: whoever can call `POST /flow_runs/{id}/resume`, or fill in the paused
run's form in its UI, is nobody in particular, and a name typed there is a claim. So the resume
input decides only with proof of who sends it:

- a one-time approval code that the link page mailed to an approver (the approver is the one it
  was mailed to), verified and consumed as the link page does, each wrong try counted; or
- a receipt the gateway signs after it verified a code itself and stored the decision, bound to
  the run, the request, the approver and the decision, so that it works nowhere else.

Anything else decides nothing and is written to the change's timeline as refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlmodel import Session

from itilflow import clock, signing
from itilflow.models import (
    ApprovalCode,
    ApprovalRequest,
    Change,
    add_change_entry,
    list_approval_requests,
)
from itilflow.policies import Policies
from itilflow.services.changes.approvals import (
    DecisionRefused,
    approval_state,
    code_matches,
    consume_approval_code,
    decide,
    live_code_of,
)
from itilflow.services.changes.errors import SegregationRefused
from itilflow.services.changes.overrides import record_refusal

RESUME_PURPOSE = "approval-resume"
# The gateway resumes the run at once; a receipt is no use later.
RECEIPT_VALID_FOR = timedelta(minutes=10)
# Who a resume without proof came from: anyone who reached the Prefect API or its UI.
UNAUTHENTICATED = "prefect-api (unauthenticated)"
VIA = "prefect-ui"


@dataclass(frozen=True)
class EngineDecision:
    """decided: the code decided now; recorded: the gateway had stored it (a receipt);
    refused: no valid proof, nothing decided (on the timeline); nothing: no decision pending."""

    outcome: Literal["decided", "recorded", "refused", "nothing"]
    message: str


def resume_receipt(
    *, request: ApprovalRequest, decision: str, flow_run_id: str, secret: str
) -> str:
    """What the gateway resumes a run with after a link's code decided: signed with the secret
    key, for this run, request, approver and decision only."""
    payload = {
        "run": flow_run_id,
        "request": request.id,
        "approver": request.approver,
        "decision": decision,
    }
    return signing.sign(payload, secret=secret, purpose=RESUME_PURPOSE, valid_for=RECEIPT_VALID_FOR)


def decide_from_engine(
    *,
    session: Session,
    change: Change,
    version: int,
    decision: str,
    code: str,
    comment: str,
    flow_run_id: str,
    secret: str,
    policies: Policies,
) -> EngineDecision:
    """Take (or refuse) the decision a resume of the change's paused run carries. The caller
    commits: a refusal's timeline entry and a wrong code's counted try are kept."""
    code = code.strip()
    try:
        if "." in code:  # codes are digits; receipts are signed tokens
            return _by_receipt(session, change, version, decision, code, flow_run_id, secret)
        state = approval_state(session, change, version, policies)
        if state.outcome != "pending":
            return EngineDecision("nothing", f"nothing to decide ({state.outcome})")
        return _by_code(session, change, version, decision, code, comment, secret, policies)
    except DecisionRefused as exc:
        return _refuse(session, change, decision, str(exc))


def _by_receipt(
    session: Session,
    change: Change,
    version: int,
    decision: str,
    receipt: str,
    flow_run_id: str,
    secret: str,
) -> EngineDecision:
    try:
        payload = signing.verify(receipt, secret=secret, purpose=RESUME_PURPOSE)
    except signing.BadToken as exc:
        raise DecisionRefused(f"the receipt is not valid: {exc}") from exc
    request = session.get(ApprovalRequest, payload.get("request"))
    if (
        payload.get("run") != flow_run_id
        or request is None
        or request.change_id != change.id
        or request.version != version
        or request.approver != payload.get("approver")
        or payload.get("decision") != decision
        or request.decision != decision
    ):
        raise DecisionRefused("the receipt is for another run, request or decision")
    return EngineDecision("recorded", f"{request.approver} decided '{decision}' by link")


def _by_code(
    session: Session,
    change: Change,
    version: int,
    decision: str,
    code: str,
    comment: str,
    secret: str,
    policies: Policies,
) -> EngineDecision:
    """The undecided request whose live code this is decides; a code that is none of theirs
    counts as a wrong try against every live code for this decision (a guess in the form is a
    guess at each of them)."""
    if decision not in ("approve", "reject"):
        raise DecisionRefused(f"unknown decision {decision!r}: expected approve or reject")
    if not code:
        raise DecisionRefused("no code was given")
    link_policy = policies.change.approval_links
    candidates = _live_codes(session, change, version, decision, link_policy.code_attempts)
    if not candidates:
        raise DecisionRefused(
            f"no code to {decision} is waiting: open the approval link and press "
            f"{decision.capitalize()} to have one mailed"
        )
    for request, live in candidates:
        if code_matches(live, request, code, secret=secret):
            consume_approval_code(
                session=session,
                request=request,
                decision=decision,
                code=code,
                secret=secret,
                policy=link_policy,
            )
            try:
                decide(
                    session=session,
                    request=request,
                    decision=decision,
                    comment=comment,
                    via=VIA,
                    segregation=policies.change.segregation,
                )
            except SegregationRefused as exc:  # a valid code, but the rule says no
                why = str(exc)
                record_refusal(session, request, decision, why, actor=request.approver, via=VIA)
                return EngineDecision("refused", why)
            return EngineDecision("decided", f"{decision}d by {request.approver}")
    for request, _ in candidates:
        try:  # counts the try as the link page does
            consume_approval_code(
                session=session,
                request=request,
                decision=decision,
                code=code,
                secret=secret,
                policy=link_policy,
            )
        except DecisionRefused:
            pass
    raise DecisionRefused("the code is wrong (the try is counted)")


def _live_codes(
    session: Session, change: Change, version: int, decision: str, attempts: int
) -> list[tuple[ApprovalRequest, ApprovalCode]]:
    """The undecided requests of this version with a usable code for `decision`."""
    assert change.id is not None
    now = clock.now()
    found = []
    for request in list_approval_requests(session=session, change_id=change.id, version=version):
        if request.decision is not None or request.voided_at is not None:
            continue
        live = live_code_of(session, request)
        if (
            live is not None
            and live.decision == decision
            and live.expires_at > now
            and live.attempts < attempts
        ):
            found.append((request, live))
    return found


def _refuse(session: Session, change: Change, decision: str, why: str) -> EngineDecision:
    assert change.id is not None
    add_change_entry(
        session=session,
        change_id=change.id,
        kind="approval_refused",
        actor=UNAUTHENTICATED,
        message=f"a resume of the paused run to {decision!r} decided nothing: {why}",
        data={"decision": decision, "via": "prefect-api"},
    )
    return EngineDecision("refused", why)
