"""The health reports: figures, HTML and PDF, a Prefect artifact, email and chat.

Three flows, one per span, each scheduled on the first day of its period by prefect.yaml
(deployments `monthly-health-report`, `quarterly-health-report`, `yearly-health-report`, times
and time zone as report.yaml says) for the period just ended. Run any of them from the UI for a
period of your choice (YYYY-MM, YYYY-Qn or YYYY: the period says its own span), or with another
SLA policy (what-if).
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run
from pydantic import AfterValidator, Field

from itilflow.policies.routing import Language
from itilflow.reports import PERIOD_PATTERN, Span, check_period
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
    Field(json_schema_extra={"pattern": PERIOD_PATTERN}, examples=["2026-10", "2026-Q3", "2026"]),
]


_SPAN_OF_FLOW: dict[str, Span] = {
    "monthly-health-report": "month",
    "quarterly-health-report": "quarter",
    "yearly-health-report": "year",
}


def _run_name() -> str:
    """'health report 2026-Q3', or 'health report (last quarter)' for a scheduled run."""
    period = flow_run.parameters.get("period")
    span = _SPAN_OF_FLOW.get(flow_run.flow_name or "", "month")
    return f"health report {period or f'(last {span})'}"


async def _health_report(
    span: Span, period: str | None, language: str | None, what_if_policy_dir: str | None
) -> dict[str, Any]:
    language = language or runtime().policies.report.language
    report = compute_report_figures(period, what_if_policy_dir, span)
    files = render_report(report, language)
    await publish_report(report, language, files)
    sent: dict[str, list[str]] = {"email": [], "chat": []}
    if report.what_if_policy is None:
        sent["email"] = await send_report_email(report, language, files)
        sent["chat"] = await send_report_chat(report, language, files)
    return {**report.summary(), "files": files, "sent": sent}


@flow(name="monthly-health-report", flow_run_name=_run_name, retries=1)
async def monthly_health_report(
    period: Period | None = None,
    language: Language | None = None,
    what_if_policy_dir: str | None = None,
) -> dict[str, Any]:
    """The health report of a month (or of the quarter or year you name), sent as report.yaml
    says.

    Args:
        period: YYYY-MM (e.g. 2026-10), YYYY-Qn (2026-Q3) or YYYY (2026); empty: the month
            before, in report.yaml's time zone
        language: en or zh_CN; empty: report.yaml's
        what_if_policy_dir: a policy folder or an sla.yaml file; its SLA compliance is shown
            next to the current policy's (a what-if report is stored, not sent to anyone)
    """
    return await _health_report("month", period, language, what_if_policy_dir)


@flow(name="quarterly-health-report", flow_run_name=_run_name, retries=1)
async def quarterly_health_report(
    period: Period | None = None,
    language: Language | None = None,
    what_if_policy_dir: str | None = None,
) -> dict[str, Any]:
    """The health report of a quarter against the quarters before it, sent as report.yaml says.

    Args:
        period: YYYY-Qn (e.g. 2026-Q3), or YYYY-MM / YYYY; empty: the quarter before, in
            report.yaml's time zone
        language: en or zh_CN; empty: report.yaml's
        what_if_policy_dir: a policy folder or an sla.yaml file (a what-if report is stored,
            not sent to anyone)
    """
    return await _health_report("quarter", period, language, what_if_policy_dir)


@flow(name="yearly-health-report", flow_run_name=_run_name, retries=1)
async def yearly_health_report(
    period: Period | None = None,
    language: Language | None = None,
    what_if_policy_dir: str | None = None,
) -> dict[str, Any]:
    """The health report of a year against the years before it, sent as report.yaml says.

    Args:
        period: YYYY (e.g. 2026), or YYYY-MM / YYYY-Qn; empty: the year before, in report.yaml's
            time zone
        language: en or zh_CN; empty: report.yaml's
        what_if_policy_dir: a policy folder or an sla.yaml file (a what-if report is stored,
            not sent to anyone)
    """
    return await _health_report("year", period, language, what_if_policy_dir)
