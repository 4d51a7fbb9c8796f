from __future__ import annotations

from prefect import task
from prefect.artifacts import acreate_markdown_artifact

from itilflow.reports import Report, render_markdown

# The artifact's key per span: the monthly report's stays as it was.
ARTIFACT_KEYS = {
    "month": "monthly-health-report",
    "quarter": "quarterly-health-report",
    "year": "yearly-health-report",
}


@task(name="publish-report")
async def publish_report(report: Report, language: str, files: dict[str, str]) -> str:
    """A markdown artifact in the Prefect UI: the key figures and where the files are."""
    suffix = " (what-if)" if report.what_if_policy else ""
    kind = {"month": "Monthly", "quarter": "Quarterly", "year": "Yearly"}[report.span]
    artifact_id = await acreate_markdown_artifact(
        markdown=render_markdown(report, language, files),
        key=ARTIFACT_KEYS[report.span],
        description=f"{kind} health report {report.period}{suffix}",
    )
    return str(artifact_id)
