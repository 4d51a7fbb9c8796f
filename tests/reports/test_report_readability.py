"""The quarterly report's PDF read as a person reads it: weasyprint renders it, poppler turns it
into text (pdftotext) and pages (pdftoppm). The summary paragraph is there in both languages,
deteriorations are flagged with a word, no value is split across lines, chart text is at least
7 pt on paper and the SLA chart's axis does not start at zero."""

from __future__ import annotations

import html as html_lib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from itilflow.reports import (
    compute_report,
    render_html,
    render_mail,
    render_markdown,
    render_pdf,
)
from tests.reports.quarters import NOW_Q, load_two_quarters

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) missing"
)

SUMMARY = {
    "en": (
        "Against the previous quarter: the largest deteriorations are SLA resolution compliance "
        "90.0% (−6.0 pt), MTTR (median) 3h 00m (+1h 00m), MTTR (p90) 3h 00m (+1h 00m); no "
        "figure improved notably."
    ),
    "zh_CN": (
        "与上一季度相比：变差最多的是 SLA 解决达成率 90.0%（−6.0 pt）、"
        "平均解决时间 MTTR（中位数） 3小时 00分（+1小时 00分）、"
        "MTTR（90 分位） 3小时 00分（+1小时 00分）；没有明显改善的指标。"
    ),
}
WORSE = {"en": "⚠ worse", "zh_CN": "⚠ 变差"}


@pytest.fixture
def report(engine, policies):
    load_two_quarters(engine)
    return compute_report(engine, policies, period=None, span="quarter", now=NOW_Q)


def pdf_text(pdf: bytes, folder: Path, *options: str) -> str:
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        ["pdftotext", *options, str(path), "-"], capture_output=True, check=True, timeout=60
    )
    return result.stdout.decode("utf-8")


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_quarter_against_the_one_before(report) -> None:
    assert (report.period, report.span) == ("2026-Q3", "quarter")
    assert report.months == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2", "2026-Q3"]
    summary = report.summary()
    assert (summary["incidents"], summary["resolution_compliance"]) == (50, 0.9)
    assert summary["mttr_median"] == 3 * 3600


def test_a_year_against_the_years_before(engine, policies) -> None:
    load_two_quarters(engine)
    report = compute_report(engine, policies, period="2026", now=NOW_Q)
    assert (report.span, report.months) == ("year", ["2024", "2025", "2026"])
    assert report.summary()["incidents"] == 100
    html = render_html(report, "zh_CN")
    assert "年度服务健康报告 · 2026" in html and "上一年" in html
    # 2025 had no incidents: opened +100 is flagged, compliance has nothing to compare with.
    assert "与上一年相比：变差最多的是 新增事件 100（+100）；没有明显改善的指标。" in html


@pytest.mark.parametrize("language", ["en", "zh_CN"])
def test_the_pdf_opens_with_what_changed_and_flags_deteriorations(
    report, tmp_path: Path, language: str
) -> None:
    pdf = render_pdf(render_html(report, language))
    text = pdf_text(pdf, tmp_path)
    # pdftotext breaks the paragraph where the page does: compare with spaces normalised (and
    # none around CJK punctuation, which a line break may leave).
    flat = re.sub(r"\s*([（）：；、])\s*", r"\1", one_line(text))
    expected = re.sub(r"\s*([（）：；、])\s*", r"\1", one_line(SUMMARY[language]))
    assert expected in flat
    layout = pdf_text(pdf, tmp_path, "-layout")
    # Table rows with the flag (the note under the summary explains both flags: left out).
    flagged = [line for line in layout.splitlines() if WORSE[language] in line and "✔" not in line]
    assert len(flagged) == 3  # resolution compliance, MTTR median and p90
    assert any("−6.0 pt" in line and "90.0%" in line for line in flagged)
    mail = render_mail(report, language, {})
    assert SUMMARY[language] in one_line(mail.text)


def test_no_value_is_split_across_lines(report, tmp_path: Path) -> None:
    html = render_html(report, "en")
    cells = {
        html_lib.unescape(re.sub(r"<[^>]+>", "", cell)).replace("\xa0", " ").strip()
        for cell in re.findall(r"<td(?: class=\"[^\"]*\")?>(.*?)</td>", html)
    }
    values = {c for c in cells if re.search(r"\d", c) and " " in c}
    assert {"3h 00m", "+1h 00m ⚠ worse", "−6.0 pt ⚠ worse", "45 / 5 / 0"} <= values
    lines = pdf_text(render_pdf(html), tmp_path, "-layout").splitlines()
    split = [v for v in values if not any(v in line for line in lines)]
    assert split == [], "values broken across lines in the PDF"


def test_chart_text_measured_on_paper_is_at_least_7_pt(report, tmp_path: Path) -> None:
    """pdftotext -bbox gives each word's box in points; DejaVu Sans' box is 1.164 em high
    (ascent 0.928 + descent 0.236), so a word's font size is its box height / 1.164."""
    bbox = pdf_text(render_pdf(render_html(report, "en")), tmp_path, "-bbox")
    words = re.findall(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)<', bbox)
    size = {w: (float(b) - float(a)) / 1.164 for a, b, w in words}
    # Words only the charts write: the axis note, a legend entry, the y ticks of the SLA chart.
    for word in ("axis", "MTTR", "85%", "100%", "Q1"):
        sizes = [(float(b) - float(a)) / 1.164 for a, b, w in words if w == word]
        assert sizes and min(sizes) >= 7 - 0.05, (word, sizes)
    assert size["Quarterly"] > 7


def test_the_sla_chart_starts_near_the_data_not_at_zero(report) -> None:
    html = render_html(report, "en")
    [sla_chart] = re.findall(r'<svg[^>]*aria-label="SLA compliance per quarter".*?</svg>', html)
    ticks = [int(t) for t in re.findall(r">(\d+)%</text>", sla_chart)]
    assert min(ticks) == 85 and max(ticks) == 100  # 90 % and 96 % (and 100 %) in Q2 and Q3
    assert "axis not from 0" in sla_chart


def test_the_artifact_compares_the_quarter_with_the_previous_one(report) -> None:
    markdown = render_markdown(report, "en", {})
    assert "| Figure | This quarter | Previous quarter |" in markdown
    assert "| SLA resolution compliance | 90.0% | 96.0% |" in markdown
    assert "| MTTR \\(median\\) | 3h 00m | 2h 00m |" in markdown
