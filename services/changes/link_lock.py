"""The code cap of an approval link (`approval_links.max_codes_per_link`).

Each code has `code_attempts` tries; without a cap a new code every `code_resend_after` gave
about 21,600 guesses over a link's three days. Asking for one code more than the cap locks the
link: no codes, no decisions by it. The caller commits the lock and tells the approver and the
change managers (approval_codes.lock_notices).
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.models import ApprovalCode, ApprovalRequest
from itilflow.policies import ApprovalLinks
from itilflow.services.changes.errors import LinkLocked

LOCKED = "this link is locked: more codes were asked for it than allowed"


def refuse_past_the_cap(session: Session, request: ApprovalRequest, policy: ApprovalLinks) -> None:
    """LinkLocked when the link is locked, or when it had its `max_codes_per_link` codes
    already: then it is locked now (in the caller's transaction, which commits it)."""
    if request.locked_at is not None:
        raise LinkLocked(LOCKED, newly=False)
    issued = session.execute(
        select(func.count())
        .select_from(ApprovalCode)
        .where(col(ApprovalCode.request_id) == request.id)
    ).scalar_one()
    if issued < policy.max_codes_per_link:
        return
    now = clock.now()
    locked = session.execute(
        update(ApprovalRequest)
        .where(col(ApprovalRequest.id) == request.id, col(ApprovalRequest.locked_at).is_(None))
        .values(locked_at=now)
    ).rowcount
    request.locked_at = now
    session.execute(
        update(ApprovalCode)
        .where(
            col(ApprovalCode.request_id) == request.id,
            col(ApprovalCode.used_at).is_(None),
            col(ApprovalCode.voided_at).is_(None),
        )
        .values(voided_at=now)
    )
    raise LinkLocked(LOCKED, newly=locked == 1)
