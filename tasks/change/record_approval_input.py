from __future__ import annotations

from prefect import task

from itilflow.models import add_change_entry, list_approval_requests, session_scope
from itilflow.runtime import runtime
from itilflow.services import changes


@task(name="record-approval-input")
def record_approval_input(
    change_id: int, version: int, approver: str, decision: str, comment: str
) -> str:
    """A decision typed into the paused run's form in the Prefect UI (a link's decision is
    already stored by the gateway, which then resumes the run: that input is a no-op here)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        state = changes.approval_state(session, change, version, rt.policies)
        if state.outcome != "pending" or state.stage is None:
            return f"nothing to decide ({state.outcome})"
        request = changes.pending_request_for(session, change, approver, state.stage.name)
        if request is None:
            decided = [
                r
                for r in list_approval_requests(
                    session=session, change_id=change_id, version=version
                )
                if r.approver == approver and r.decision
            ]
            if decided:
                return f"{approver} already decided '{decided[-1].decision}'"
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="decision_refused",
                actor=approver,
                message=f"'{decision}' from {approver} ignored: not an approver of stage "
                f"{state.stage.name} ({', '.join(state.stage.approvers)})",
            )
            return "refused: not an approver of this stage"
        try:
            changes.decide(
                session=session,
                request=request,
                decision=decision,
                comment=comment,
                via="prefect-ui",
                segregation=rt.policies.change.segregation,
            )
        except changes.SegregationRefused as exc:
            changes.record_refusal(
                session, request, decision, str(exc), actor=approver, via="prefect-ui"
            )
            return f"refused: {exc}"
        except changes.DecisionRefused as exc:
            return f"refused: {exc}"
        return f"{decision}d by {approver}"
