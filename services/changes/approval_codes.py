"""The approval-code exchange behind an emailed approval link (`approval_links.confirm_by_code`).

Pressing approve or reject on the link's page mails a one-time code to the address on record for
the approver the link was made for (never one from the request): the code is stored before it is
mailed (the approver may be quick), withdrawn when the mail fails (so the approver may ask again
at once), and the sending noted on the change's timeline once it went. Only a second POST with
the code decides (approvals.decide_by_link). The caller renders and sends the mail: the services
do no I/O of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlmodel import Session

from itilflow.models import ApprovalRequest, add_change_entry, get_engineer
from itilflow.policies import ApprovalLinks, Policies
from itilflow.services.changes.approvals import (
    issue_approval_code,
    mask_address,
    withdraw_approval_code,
)
from itilflow.services.changes.errors import CodeNotSent, DecisionRefused, LinkLocked
from itilflow.services.principals import people_with_role

LOCKED_KIND = "approval_link_locked"


class NoAddressOnRecord(DecisionRefused):
    """The approver has no email address in the people data: no code can reach them."""


class CodeSentRecently(CodeNotSent):
    """A code went less than `code_resend_after` ago; the approver should enter that one."""

    def __init__(self, masked_address: str) -> None:
        super().__init__(f"a code was mailed to {masked_address} recently")
        self.masked_address = masked_address


class CodeMailFailed(DecisionRefused):
    """The mail with the code could not be sent; the code was withdrawn, nothing decided."""

    def __init__(self, masked_address: str) -> None:
        super().__init__(f"the mail with the code to {masked_address} could not be sent")
        self.masked_address = masked_address


@dataclass(frozen=True)
class CodeSent:
    masked_address: str


def lock_contacts(session: Session, policies: Policies) -> list[str]:
    """Who decides when a link is locked: every change manager, else the policy's escalation
    contact (none when neither exists)."""
    managers = people_with_role(session=session, role="change_manager")
    escalate_to = policies.change.timing.escalate_to
    return managers or ([escalate_to] if escalate_to else [])


def masked_address_of(session: Session, approver: str) -> str | None:
    """The approver's address on record, masked for a page (a.b***@example.org), or None."""
    engineer = get_engineer(session=session, username=approver)
    return mask_address(engineer.email) if engineer and engineer.email else None


async def send_approval_code(
    *,
    open_session: Callable[[], AbstractContextManager[Session]],
    request: ApprovalRequest,
    decision: str,
    secret: str,
    policy: ApprovalLinks,
    mail_code: Callable[[str, str], Awaitable[bool]],
    on_locked: Callable[[Session, ApprovalRequest], None] | None = None,
) -> CodeSent:
    """Issue a code for `decision` on `request` and have `mail_code(address, code)` mail it
    (True when it went). Decides nothing. Raises NoAddressOnRecord, CodeSentRecently,
    CodeMailFailed, LinkLocked past the code cap, or DecisionRefused for a decision that is
    neither approve nor reject. The call that locks the link notes it on the change's timeline
    and has `on_locked(session, request)` add the notices, in the same transaction."""
    with open_session() as session:
        engineer = get_engineer(session=session, username=request.approver)
        address = engineer.email if engineer else None
        if not address:
            raise NoAddressOnRecord(f"there is no email address on record for {request.approver}")
        masked = mask_address(address)
        try:
            issued, plain_code = issue_approval_code(
                session=session, request=request, decision=decision, secret=secret, policy=policy
            )
        except CodeNotSent as exc:
            raise CodeSentRecently(masked) from exc
        except LinkLocked as exc:
            if exc.newly:
                _note_locked(session, request, policy)
                if on_locked is not None:
                    on_locked(session, request)
                session.commit()
            raise
        session.commit()  # stored before it is mailed: the approver may be quick
    if not await mail_code(address, plain_code):
        with open_session() as session:
            assert issued.id is not None
            withdraw_approval_code(session=session, code_id=issued.id)
            session.commit()
        raise CodeMailFailed(masked)
    with open_session() as session:
        add_change_entry(
            session=session,
            change_id=request.change_id,
            kind="approval_code_sent",
            actor="gateway",
            message=f"{request.stage}: a code to {decision} was mailed to {request.approver}",
            data={"request": request.id, "decision": decision},
        )
        session.commit()
    return CodeSent(masked)


def _note_locked(session: Session, request: ApprovalRequest, policy: ApprovalLinks) -> None:
    add_change_entry(
        session=session,
        change_id=request.change_id,
        kind=LOCKED_KIND,
        actor="gateway",
        message=f"{request.stage}: the approval link of {request.approver} is locked after "
        f"{policy.max_codes_per_link} codes: it sends no codes and takes no decisions",
        data={"request": request.id, "codes": policy.max_codes_per_link},
    )
