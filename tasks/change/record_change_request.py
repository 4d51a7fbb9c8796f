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
    plan: dict[str, Any] | None,
    category: str,
    cis: list[str],
    description: str,
    planned_start: datetime | None,
    planned_end: datetime | None,
    requester_email: str | None,
    template: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> int:
    """Store the change asked for in the Prefect UI. The UI proves no one's identity, so its
    requester holds no role and no group: a standard change from here is refused unless a
    template names "prefect-ui" itself."""
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
                template=template,
                parameters=parameters or {},
            ),
            actor=PREFECT_OPERATOR,
            policies=rt.policies,
        )
        session.flush()
        assert change.id is not None
        return change.id
