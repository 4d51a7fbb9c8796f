from __future__ import annotations

from prefect import task
from pydantic import BaseModel

from itilflow.models import ChangeStatus, add_change_entry, session_scope
from itilflow.policies.change import RiskLevel
from itilflow.runtime import runtime
from itilflow.services import changes


class RiskVerdict(BaseModel):
    """What the change process goes on with: a newer version made this one stale, or the policy
    refused the change (why), or it goes to approval at `level`."""

    stale: bool = False
    refused: str | None = None
    level: RiskLevel | None = None


@task(name="assess-change-risk", retries=2, retry_delay_seconds=1)
def assess_change_risk(change_id: int, version: int) -> RiskVerdict:
    """Score the change, record the reasons, and refuse it when policy says so."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        if change.version != version:
            return RiskVerdict(stale=True)
        if change.status != ChangeStatus.submitted and change.risk_level is not None:
            # Assessed when this version was submitted: a later run (after a decision) reads it.
            return RiskVerdict(level=change.risk_level)
        risk = changes.assess(session, change, rt.policies)
        change.risk_score, change.risk_level, change.risk_reasons = (
            risk.score,
            risk.level,
            risk.reasons,
        )
        if risk.refused:
            change.status = ChangeStatus.refused
        elif change.status == ChangeStatus.submitted:
            change.status = ChangeStatus.awaiting_approval
        session.add(change)
        add_change_entry(
            session=session,
            change_id=change_id,
            kind="risk_assessed",
            actor="flow:change",
            message=f"risk {risk.level} ({risk.score:g}): " + ("; ".join(risk.reasons) or "none"),
            data=risk.model_dump(),
        )
        if risk.refused:
            add_change_entry(
                session=session,
                change_id=change_id,
                kind="refused",
                actor="flow:change",
                message=risk.refused,
            )
        return RiskVerdict(refused=risk.refused, level=risk.level)
