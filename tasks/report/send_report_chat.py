"""Post the report's summary to report.yaml's chat tags. A task per channel, so the engine retries
a failed channel without resending the other."""

from __future__ import annotations

from prefect import task

from itilflow.notifications import asend_chat
from itilflow.reports import Report, render_mail
from itilflow.runtime import runtime


@task(name="send-report-chat", retries=3, retry_delay_seconds=[5, 30, 120])
async def send_report_chat(report: Report, language: str, files: dict[str, str]) -> list[str]:
    """Post the summary to report.yaml's chat tags; returns the tags (none: nothing sent)."""
    rt = runtime()
    tags = list(rt.policies.report.chat_tags)
    if not tags:
        return []
    message = render_mail(report, language, files)
    await asend_chat(
        title=message.chat_title,
        body=message.chat_body,
        tags=tags,
        config=rt.settings.apprise_config,
    )
    return tags
