"""The monthly health report: figures by SQL aggregation, SVG charts, HTML and PDF.

    report = compute_report(engine, policies, period="2026-10", now=clock.now())
    html = render_html(report, "zh_CN")
    pdf = render_pdf(html)

Sections come from a registry (`itilflow.reports.sections`): incidents, changes, problems and
inspections; a section whose tables do not exist shows "no data". `itilflow.reports.incidents`
says how each incident figure is counted, `itilflow.reports.processes` the others.
"""

from itilflow.reports.compute import compute_report, load_sla_policy
from itilflow.reports.figures import (
    Availability,
    Breakdown,
    Compliance,
    DurationStats,
    IncidentMonth,
    IncidentSection,
    Report,
    SectionResult,
    SlaMonth,
    WhatIf,
)
from itilflow.reports.period import (
    PERIOD_PATTERN,
    SPANS,
    Month,
    Period,
    Span,
    check_period,
    latest_complete,
    parse_period,
    previous_month,
    report_months,
)
from itilflow.reports.render import (
    LANGUAGES,
    PdfUnavailable,
    render_html,
    render_mail,
    render_markdown,
    render_pdf,
)
from itilflow.reports.sections import SECTIONS, Section, SectionContext, register_section

__all__ = [
    "LANGUAGES",
    "SECTIONS",
    "Availability",
    "Breakdown",
    "Compliance",
    "DurationStats",
    "IncidentMonth",
    "IncidentSection",
    "Month",
    "Period",
    "SPANS",
    "Span",
    "PdfUnavailable",
    "Report",
    "Section",
    "SectionContext",
    "SectionResult",
    "SlaMonth",
    "WhatIf",
    "compute_report",
    "latest_complete",
    "load_sla_policy",
    "parse_period",
    "PERIOD_PATTERN",
    "check_period",
    "previous_month",
    "register_section",
    "render_html",
    "render_mail",
    "render_markdown",
    "render_pdf",
    "report_months",
]
