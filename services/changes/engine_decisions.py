"""Decisions that reach a change through the engine (the `decide-change` deployment's form).

Prefect OSS has no users: whoever can create a flow run through its API, or fill in a
deployment's form in its UI, is nobody in particular, and a name typed there is a claim. So the
input decides only with proof of who sends it:

a one-time approval code that the link page mailed to an approver (the approver is the one it
was mailed to), verified and consumed as the link page does, each wrong try counted.

Anything else decides nothing and is written to the change's timeline as refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlmodel import Session

from itilflow import clock
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

# Who a decision without proof came from: anyone who reached the Prefect API or its UI.
UNAUTHENTICATED = "prefect-api (unauthenticated)"
VIA = "prefect-ui"


@dataclass(frozen=True)
class EngineDecision:
    """decided: the code decided now; refused: no valid proof, nothing decided (on the
    timeline); nothing: no decision pending (or no such change)."""

    outcome: Literal["decided", "refused", "nothing"]
    message: str
    change_id: int | None = None


def decide_from_engine(
    *,
    session: Session,
    change: Change,
    version: int,
    decision: str,
    code: str,
    comment: str,
    secret: str,
    policies: Policies,
) -> EngineDecision:
    """Take (or refuse) the decision of a `decide-change` run. The caller commits: a
    refusal's timeline entry and a wrong code's counted try are kept."""
    code = code.strip()
    try:
        state = approval_state(session, change, version, policies)
        if state.outcome != "pending":
            return EngineDecision("nothing", f"nothing to decide ({state.outcome})")
        return _by_code(session, change, version, decision, code, comment, secret, policies)
    except DecisionRefused as exc:
        return _refuse(session, change, decision, str(exc))


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
        message=f"a decision from the Prefect UI or API to {decision!r} decided nothing: {why}",
        data={"decision": decision, "via": "prefect-api"},
    )
    return EngineDecision("refused", why)
