"""The quarterly-health-report flow end to end on the Prefect test server, as its schedule runs
it on 1 October: the quarter just ended (2026-Q3) against the one before, the PDF mailed through
a real SMTP server, and the PDF's text opening with what changed and flagging what got worse."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
)

from itilflow import clock
from itilflow.flows.report import quarterly_health_report
from tests.reports.quarters import NOW_Q, load_two_quarters

pytestmark = pytest.mark.usefixtures("prefect_server")


async def test_the_quarterly_report_is_mailed_with_its_summary_and_flags(
    rt, smtp_server, http_sink, tmp_path: Path
) -> None:
    load_two_quarters(rt.engine)
    clock.freeze(NOW_Q)

    result = await quarterly_health_report()

    assert (result["period"], result["span"]) == ("2026-Q3", "quarter")
    assert (result["incidents"], result["resolution_compliance"]) == (50, 0.9)
    assert result["sent"] == {"email": ["service-manager@example.com"], "chat": ["team-chat"]}
    pdf = Path(result["files"]["pdf"])
    assert pdf.name == "health-report-2026-Q3-en.pdf"

    [mail] = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ("service-manager@example.com",)
    assert mail.message["Subject"] == "Quarterly health report 2026-Q3"
    body = " ".join(mail.message.get_body(("plain",)).get_content().split())
    assert "What changed: Against the previous quarter: the largest deteriorations are" in body
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_filename() == pdf.name
    mailed = tmp_path / "mailed.pdf"
    mailed.write_bytes(attachment.get_content())
    text = subprocess.run(
        ["pdftotext", "-layout", str(mailed), "-"], capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8")
    flat = " ".join(text.split())
    assert "Quarterly health report · 2026-Q3" in flat
    assert (
        "Against the previous quarter: the largest deteriorations are SLA resolution "
        "compliance 90.0% (−6.0 pt)"
    ) in flat
    # The resolution compliance row (its label wraps; its values do not): Q2, Q3, the
    # previous quarter, the change flagged.
    rows = [line for line in text.splitlines() if "⚠ worse" in line and "✔" not in line]
    assert any(re.search(r"96\.0%\s+90\.0%\s+96\.0%\s+−6\.0 pt ⚠ worse", r) for r in rows), rows

    [chat] = http_sink.wait_for(1)
    assert "Quarterly health report 2026-Q3" in chat.json["title"]
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["quarterly-health-report"]))
        )
        assert artifacts and str(pdf) in max(artifacts, key=lambda a: a.created).data
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["quarterly-health-report"]))
        )
    assert "health report (last quarter)" in [run.name for run in runs]
