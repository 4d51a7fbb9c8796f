"""The owner group's answer to a proactive notice: accept (a standard change request from the
notice's template for its window, requested by whoever accepts) or decline with a reason.

Who may decide: a change manager, or an agent of the CI's owner group. The template's own
requesters rule still applies to the change (change.yaml `requesters`). Works in the caller's
transaction; the caller starts the change's run once committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from itilflow import clock
from itilflow.models import Change, ProactiveNotice, ProactiveStatus, add_proactive_entry
from itilflow.policies import Policies
from itilflow.policies.proactive import proposed_window
from itilflow.services.changes.requests import NewChange, submit_change


class NotAllowedToDecide(PermissionError):
    """The principal may not decide on this notice (403); nothing changed."""


class NotOpen(ValueError):
    """The notice is decided or ended already (409); nothing changed."""


@dataclass(frozen=True)
class Decider:
    name: str
    roles: frozenset[str]
    groups: frozenset[str]
    email: str | None = None


def may_decide(notice: ProactiveNotice, decider: Decider) -> bool:
    if "change_manager" in decider.roles:
        return True
    return "agent" in decider.roles and notice.owner_group in decider.groups


def _check(notice: ProactiveNotice, decider: Decider, what: str) -> None:
    if not may_decide(notice, decider):
        raise NotAllowedToDecide(
            f"only a change_manager or an agent of {notice.ci_name}'s owner group "
            f"({notice.owner_group or 'none'}) may {what} {notice.number}"
        )
    if notice.status != ProactiveStatus.proposed or notice.cleared_at is not None:
        raise NotOpen(f"{notice.number} is {notice.status.replace('_', ' ')}: nothing to {what}")


def accept(
    session: Session,
    policies: Policies,
    notice: ProactiveNotice,
    decider: Decider,
    *,
    parameters: dict[str, Any] | None = None,
) -> Change:
    """The change request from the template with the proposed window (the next one when it has
    begun already). `parameters` complete or replace the proposed ones. Raises
    NotAllowedToDecide, NotOpen, or the change service's refusals (nothing stored then)."""
    _check(notice, decider, "accept")
    assert notice.id is not None
    now = clock.now()
    start, end = notice.proposed_start, notice.proposed_end
    if start <= now:
        ci_zone = notice.time_zone if policies.proactive.window.time_zone == "ci" else None
        start, end, _ = proposed_window(policies.change, policies.proactive.window, ci_zone, now)
    values = {**(notice.parameters or {}), **(parameters or {})}
    change = submit_change(
        session=session,
        new=NewChange(
            title=f"{notice.template} on {notice.ci_name} ({notice.number}: {_what(notice)})",
            description=(
                f"Proposed by proactive notice {notice.number}: {_what(notice)}, foreseen at "
                f"{notice.predicted_at:%Y-%m-%d %H:%M} UTC. Accepted by {decider.name}."
            ),
            category="standard",
            ci_names=[notice.ci_name],
            planned_start=start,
            planned_end=end,
            requester=decider.name,
            requester_email=decider.email,
            template=notice.template,
            parameters=values,
            requester_roles=decider.roles,
            requester_groups=decider.groups,
        ),
        actor=decider.name,
        policies=policies,
    )
    notice.status = ProactiveStatus.accepted.value
    notice.decided_by, notice.decided_at, notice.updated_at = decider.name, now, now
    notice.change_id = change.id
    notice.parameters = values
    session.add(notice)
    add_proactive_entry(
        session=session,
        proactive_id=notice.id,
        kind="accepted",
        actor=decider.name,
        message=f"accepted: {change.number} planned from {start:%Y-%m-%d %H:%M} UTC",
        data={"change_id": change.id, "parameters": values},
    )
    return change


def decline(
    session: Session, notice: ProactiveNotice, decider: Decider, *, reason: str
) -> ProactiveNotice:
    _check(notice, decider, "decline")
    assert notice.id is not None
    now = clock.now()
    notice.status = ProactiveStatus.declined.value
    notice.decided_by, notice.decided_at, notice.updated_at = decider.name, now, now
    notice.reason = reason
    session.add(notice)
    add_proactive_entry(
        session=session,
        proactive_id=notice.id,
        kind="declined",
        actor=decider.name,
        message=f"declined: {reason}",
        data={"reason": reason},
    )
    return notice


def _what(notice: ProactiveNotice) -> str:
    if notice.kind == "disk_fill":
        return f"{notice.item} filling up"
    return f"certificate of {notice.item} expiring"
