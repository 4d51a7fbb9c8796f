from __future__ import annotations

import asyncio
from typing import Any

from prefect import task

from itilflow import clock
from itilflow.models import ChangeStatus, add_change_entry, session_scope
from itilflow.notifications import asend_email, render_message
from itilflow.notifications.change_context import change_context, email_of
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="approval-step", retries=2, retry_delay_seconds=[1, 5])
async def approval_step(change_id: int, version: int) -> dict[str, Any]:
    """Where the approvals stand; ask the current stage's approvers who were not asked yet.

    Returns the outcome (approved, rejected, pending, stale) and, when pending, who was asked.
    """
    rt = runtime()
    outgoing: list[tuple[str, str, dict[str, Any]]] = []
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        state = changes.approval_state(session, change, version, rt.policies)
        if state.outcome in ("approved", "rejected"):
            change.status = (
                ChangeStatus.approved if state.outcome == "approved" else ChangeStatus.rejected
            )
            change.updated_at = clock.now()
            session.add(change)
            add_change_entry(
                session=session,
                change_id=change_id,
                kind=state.outcome,
                actor="flow:change",
                message=f"version {version} {state.outcome}"
                + (f" at stage {state.stage.name}" if state.stage else ""),
            )
            return {"outcome": state.outcome}
        if state.outcome == "stale":
            return {"outcome": "stale"}
        assert state.stage is not None
        context = change_context(
            change, policies=rt.policies, public_url=rt.settings.public_url or ""
        )
        for approver in state.stage.approvers:
            if approver in state.asked:
                continue
            request = changes.create_approval_request(
                session=session,
                change=change,
                stage=state.stage.name,
                approver=approver,
                policies=rt.policies,
            )
            token = changes.approval_token(request, secret=rt.secret, policies=rt.policies)
            link = f"{rt.settings.public_url}/approvals/{token}"
            address = email_of(session, approver)
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="approval_requested",
                actor="flow:change",
                message=f"{state.stage.name}: asked {approver}"
                + ("" if address else " (no email address on record: decide in the Prefect UI)"),
                data={"stage": state.stage.name, "approver": approver, "request": request.id},
            )
            if address:
                outgoing.append(
                    (
                        address,
                        approver,
                        {
                            "change": context,
                            "approver": approver,
                            "stage": state.stage.name,
                            "approve_url": f"{link}?decision=approve",
                            "reject_url": f"{link}?decision=reject",
                            "reasons": "; ".join(change.risk_reasons) or "none",
                            "reminder": False,
                        },
                    )
                )
        stage_name = state.stage.name
    # Committed first: a link in a mail always names a stored request.
    language = rt.policies.change.language
    results = await asyncio.gather(
        *(
            asend_email(
                render_message("approval_request", language, ctx), to=[address], settings=rt.mail
            )
            for address, _, ctx in outgoing
        ),
        return_exceptions=True,
    )
    failed = [
        (approver, result)
        for (_, approver, _), result in zip(outgoing, results, strict=True)
        if isinstance(result, BaseException)
    ]
    if failed:
        with session_scope(rt.engine) as session:
            for approver, error in failed:
                add_change_entry(
                    session=session,
                    change_id=change_id,
                    kind="notification_failed",
                    actor="flow:change",
                    message=f"approval mail to {approver} failed: {error}",
                )
    return {"outcome": "pending", "stage": stage_name, "mailed": len(outgoing) - len(failed)}
