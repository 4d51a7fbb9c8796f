from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task

from itilflow.models import session_scope
from itilflow.runtime import runtime
from itilflow.services import changes
from itilflow.services.principals import PREFECT_OPERATOR


@task(name="record-change-request")
def record_change_request(
    title: str,
    plan: dict[str, Any],
    category: str,
    cis: list[str],
    description: str,
    planned_start: datetime | None,
    planned_end: datetime | None,
    requester_email: str | None,
) -> int:
    rt = runtime()
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(
                title=title,
                plan=plan,
                category=category,  # type: ignore[arg-type]
                ci_names=cis,
                description=description,
                planned_start=planned_start,
                planned_end=planned_end,
                requester=PREFECT_OPERATOR,
                requester_email=requester_email,
            ),
            actor=PREFECT_OPERATOR,
        )
        session.flush()
        assert change.id is not None
        return change.id
