"""The monthly-health-report flow end to end on the Prefect test server: files stored, an
artifact in the UI, the PDF mailed and a summary posted to chat."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from itilflow import clock
from itilflow.flows.report import monthly_health_report
from tests.reports.dataset import NOW, load_history

pytestmark = pytest.mark.usefixtures("prefect_server")


async def test_the_report_is_stored_published_mailed_and_announced(
    rt, smtp_server, http_sink
) -> None:
    load_history(rt.engine)
    clock.freeze(NOW)

    result = await monthly_health_report(language="zh_CN")

    assert result["period"] == "2026-10"
    assert result["incidents"] == 6
    assert result["response_compliance"] == 0.6
    assert result["sent"] == {"email": ["service-manager@example.com"], "chat": ["team-chat"]}
    pdf = Path(result["files"]["pdf"])
    assert pdf == (rt.settings.data_dir / "reports" / "health-report-2026-10-zh_CN.pdf").resolve()
    assert pdf.read_bytes().startswith(b"%PDF")
    assert "月度服务健康报告" in Path(result["files"]["html"]).read_text(encoding="utf-8")

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("service-manager@example.com",)
    assert mail.message["Subject"] == "月度服务健康报告 2026-10"
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_filename() == pdf.name
    assert attachment.get_content() == pdf.read_bytes()

    [chat] = http_sink.wait_for(1)
    assert "月度服务健康报告 2026-10" in chat.json["title"]
    assert "SLA 响应达成率: 60.0%" in chat.json["message"]

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["monthly-health-report"]))
        )
    assert artifacts
    latest = max(artifacts, key=lambda artifact: artifact.created)
    assert "| SLA 响应达成率 | 60.0% |" in latest.data
    assert str(pdf) in latest.data


async def test_a_what_if_run_is_stored_but_sent_to_nobody(
    rt, smtp_server, http_sink, strict_sla
) -> None:
    load_history(rt.engine)
    clock.freeze(NOW)

    result = await monthly_health_report(period="2026-10", what_if_policy_dir=str(strict_sla))

    assert result["sent"] == {"email": [], "chat": []}
    assert Path(result["files"]["pdf"]).name == "health-report-2026-10-en-what-if.pdf"
    html = Path(result["files"]["html"]).read_text(encoding="utf-8")
    assert "What-if" in html and str(strict_sla) in html
    assert smtp_server.mails == []
