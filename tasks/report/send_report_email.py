"""Mail the report's PDF to report.yaml's recipients. A task per channel, so the engine retries a
failed channel without resending the other."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from itilflow.notifications import asend_email
from itilflow.notifications.mail import Attachment
from itilflow.reports import Report, render_mail
from itilflow.runtime import runtime


@task(name="send-report-email", retries=3, retry_delay_seconds=[5, 30, 120])
async def send_report_email(report: Report, language: str, files: dict[str, str]) -> list[str]:
    """Mail the PDF; returns who it went to (nobody when report.yaml lists no recipients)."""
    rt = runtime()
    recipients = list(rt.policies.report.recipients)
    if not recipients:
        return []
    pdf = Path(files["pdf"])
    await asend_email(
        render_mail(report, language, files),
        to=recipients,
        settings=rt.mail,
        attachments=[Attachment(pdf.name, pdf.read_bytes(), "application/pdf")],
    )
    return recipients
