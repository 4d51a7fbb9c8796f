"""HTML in both languages, the PDF turned into PNG pages that are not blank, the markdown
summary, and the mail with the PDF attached captured by a real SMTP server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from itilflow.notifications import asend_email
from itilflow.notifications.mail import Attachment
from itilflow.reports import compute_report, render_html, render_mail, render_markdown, render_pdf
from tests.reports.dataset import NOW
from tests.support.smtp import SmtpCapture


@pytest.fixture
def report(engine, history, policies, strict_sla):
    return compute_report(engine, policies, period="2026-10", now=NOW)


def test_html_in_english_and_chinese(report) -> None:
    english = render_html(report, "en")
    assert "Monthly health report · 2026-10" in english
    assert english.count("<svg") == 4
    assert "Asia/Shanghai" in english
    assert "60.0%" in english  # SLA response compliance in October
    chinese = render_html(report, "zh_CN")
    assert "月度服务健康报告 · 2026-10" in chinese
    assert "首次解决率" in chinese and "2小时 00分" in chinese
    for html in (english, chinese):
        # No check results in this history: the failing-targets table says so.
        assert html.count('class="nodata"') >= 1
    with pytest.raises(ValueError, match="unknown language"):
        render_html(report, "fr")


def test_values_from_the_database_are_escaped(engine, policies) -> None:
    from tests.reports.dataset import make_incident, utc

    make_incident(
        engine,
        opened=utc(2026, 10, 3),
        priority="P1",
        category="<script>x</script>",
        ci="a|b*c",
        events=[],
    )
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    html = render_html(report, "en")
    assert "<script>x" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    markdown = render_markdown(report, "en", {"pdf": "/tmp/r.pdf"})
    assert "| Incidents opened | 1 |" in markdown


def test_the_markdown_summary(report) -> None:
    markdown = render_markdown(report, "en", {"html": "/r/x.html", "pdf": "/r/x.pdf"})
    assert markdown.startswith("# Monthly health report 2026-10\n")
    assert "| SLA response compliance | 60.0% |" in markdown
    assert "| MTTR \\(median\\) | 2h 00m |" in markdown
    assert "| First-contact resolution | 50.0% |" in markdown
    assert "No data" not in markdown  # every section has its tables here
    assert "- PDF: `/r/x.pdf`" in markdown


def pages_of(pdf: bytes, folder: Path) -> list[Path]:
    (folder / "report.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(folder / "report.pdf"), str(folder / "page")],
        check=True,
        timeout=60,
    )
    return sorted(folder.glob("page*.png"))


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (poppler-utils) missing")
@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_the_pdf_has_pages_that_are_not_blank(report, tmp_path: Path, language: str) -> None:
    pdf = render_pdf(render_html(report, language))
    assert pdf.startswith(b"%PDF")
    pages = pages_of(pdf, tmp_path)
    assert len(pages) >= 2
    with Image.open(pages[0]) as image:
        stat = ImageStat.Stat(image.convert("L"))
        assert stat.stddev[0] > 20, "the first page is (nearly) one colour"
        # Mostly white paper with dark ink and coloured charts.
        assert 150 < stat.mean[0] < 250


async def test_the_mail_carries_the_pdf(report, smtp_server: SmtpCapture) -> None:
    pdf = render_pdf(render_html(report, "en"))
    message = render_mail(report, "en", {"pdf": "/r/health-report-2026-10-en.pdf"})
    await asend_email(
        message,
        to=["manager@example.org"],
        settings=smtp_server.mail_settings(),
        attachments=[Attachment("health-report-2026-10-en.pdf", pdf, "application/pdf")],
    )
    [mail] = smtp_server.wait_for(1)
    assert mail.message["Subject"] == "Monthly health report 2026-10"
    assert "SLA response compliance: 60.0%" in mail.message.get_body(("plain",)).get_content()
    [attachment] = list(mail.message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "health-report-2026-10-en.pdf"
    assert attachment.get_content() == pdf
