"""The monthly health report: figures, HTML and PDF, a Prefect artifact, email and chat.

Scheduled on the first of each month by prefect.yaml (deployment `monthly-health-report`) for
the month before; run it from the UI for any period, or with another SLA policy (what-if).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from pydantic import AfterValidator, Field

from itilflow.policies.routing import Language
from itilflow.reports import PERIOD_PATTERN, check_period
from itilflow.runtime import runtime
from itilflow.tasks.report.compute_report_figures import compute_report_figures
from itilflow.tasks.report.publish_report import publish_report
from itilflow.tasks.report.render_report import render_report
from itilflow.tasks.report.send_report_chat import send_report_chat
from itilflow.tasks.report.send_report_email import send_report_email

# The pattern is the form's (Prefect's UI refuses anything else, as does the server, the
# deployment enforcing its schema); the validator the flow's, with a message that says what a
# period is rather than a regular expression.
Period = Annotated[
    str,
    AfterValidator(check_period),
    Field(json_schema_extra={"pattern": PERIOD_PATTERN}, examples=["2026-10"]),
]


@flow(name="monthly-health-report", flow_run_name="health report {period}", retries=1)
async def monthly_health_report(
    period: Period | None = None,
    language: Language | None = None,
    what_if_policy_dir: str | None = None,
) -> dict[str, Any]:
    """The health report of a month, sent as report.yaml says.

    Args:
        period: the month, YYYY-MM (e.g. 2026-10); empty: the month before, in report.yaml's
            time zone
        language: en or zh_CN; empty: report.yaml's
        what_if_policy_dir: a policy folder or an sla.yaml file; its SLA compliance is shown
            next to the current policy's (a what-if report is stored, not sent to anyone)
    """
    language = language or runtime().policies.report.language
    report = compute_report_figures(period, what_if_policy_dir)
    files = render_report(report, language)
    await publish_report(report, language, files)
    sent: dict[str, list[str]] = {"email": [], "chat": []}
    if report.what_if_policy is None:
        sent["email"] = await send_report_email(report, language, files)
        sent["chat"] = await send_report_chat(report, language, files)
    return {**report.summary(), "files": files, "sent": sent}
