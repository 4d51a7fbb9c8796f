from __future__ import annotations

import os
from pathlib import Path

from prefect import task

from itilflow.reports import Report, render_html, render_pdf
from itilflow.runtime import runtime


def report_name(report: Report, language: str) -> str:
    suffix = "-what-if" if report.what_if_policy else ""
    return f"health-report-{report.period}-{language}{suffix}"


def _write(path: Path, data: bytes) -> None:
    # Written aside and renamed: a reader (or a mail attachment) never sees half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


@task(name="render-report", retries=1, retry_delay_seconds=5)
def render_report(report: Report, language: str) -> dict[str, str]:
    """The report as HTML and PDF under <data dir>/reports/; returns {"html": path, "pdf": path}."""
    folder = runtime().settings.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    name = report_name(report, language)
    html = render_html(report, language)
    pdf = render_pdf(html)
    files = {"html": folder / f"{name}.html", "pdf": folder / f"{name}.pdf"}
    _write(files["html"], html.encode("utf-8"))
    _write(files["pdf"], pdf)
    return {kind: str(path.resolve()) for kind, path in files.items()}
