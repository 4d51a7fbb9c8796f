"""Patrol inspection history: a target's trend, read back from the stored check results."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel
from sqlmodel import Session

from itilflow.gateway.deps import GatewayDep, Reporter
from itilflow.models import get_target_history

router = APIRouter(prefix="/api/inspections", tags=["inspections"])


class TrendPoint(BaseModel):
    at: datetime
    check: str
    status: str
    value: float | None
    unit: str
    message: str
    run_id: int
    incident_id: int | None


@router.get("/targets/{target}/history", response_model=list[TrendPoint])
def get_target_trend(
    target: str,
    _: Reporter,
    gateway: GatewayDep,
    check: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TrendPoint]:
    """The latest `limit` results of `target` (one `check`, e.g. `node.filesystem`, or all),
    oldest first."""
    with Session(gateway.engine) as session:
        rows = get_target_history(session=session, target=target, check=check, limit=limit)
    if not rows:
        what = f"{target} / {check}" if check else target
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no inspection results for {what}")
    return [
        TrendPoint(
            at=row.at,
            check=row.check_name,
            status=row.status,
            value=row.value,
            unit=row.unit,
            message=row.message,
            run_id=row.run_id,
            incident_id=row.incident_id,
        )
        for row in rows
    ]
