"""Turn a computed Report into HTML, PDF, a markdown summary, a mail and a chat message.

One sandboxed jinja2 environment (autoescaped .html, StrictUndefined) loads
`reports/templates/`:

    templates/_base/report.html          the report (one layout for every language)
    templates/_base/sections/<key>.html  one partial per registered section with data
    templates/_base/summary.md           the Prefect artifact (markdown; values md-escaped)
    templates/_base/mail.txt             {% block subject %} and {% block body %}
    templates/_base/mail.html            the mail's HTML part (the report itself is attached)
    templates/_base/chat.txt             {% block title %} and {% block body %}
    templates/<language>/strings.html    the words: `{% set s = {...} %}`, per language

Charts are drawn by `itilflow.reports.charts` (SVG), called from the templates so that their
titles and legends come from the language's strings.
"""

from __future__ import annotations

import re
from functools import cache, partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from itilflow.notifications import RenderedMessage
from itilflow.notifications.markdown import markdown_text
from itilflow.notifications.templating import template_environment
from itilflow.reports import charts
from itilflow.reports.figures import IncidentSection, Report
from itilflow.reports.period import Span
from itilflow.reports.trends import reference, section_deltas, summarise

TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES: tuple[str, ...] = ("en", "zh_CN")
MISSING = "—"

_UNITS = {"en": ("d", "h", "m"), "zh_CN": ("天", "小时", "分")}


class PdfUnavailable(RuntimeError):
    """weasyprint (or the pango libraries it needs) is not installed."""


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; languages: {', '.join(LANGUAGES)}")


def render_html(report: Report, language: str) -> str:
    _check_language(language)
    return _render("_base/report.html", report, language)


def render_markdown(report: Report, language: str, files: dict[str, str]) -> str:
    _check_language(language)
    return _tidy(_render("_base/summary.md", report, language, files=files))


def render_mail(report: Report, language: str, files: dict[str, str]) -> RenderedMessage:
    """Subject, text and HTML of the mail that carries the PDF, and the chat summary."""
    _check_language(language)
    subject = " ".join(_block("_base/mail.txt", "subject", report, language, files).split())
    text = _tidy(_block("_base/mail.txt", "body", report, language, files))
    chat_title = " ".join(_block("_base/chat.txt", "title", report, language, files).split())
    chat_body = _tidy(_block("_base/chat.txt", "body", report, language, files))
    html = _render("_base/mail.html", report, language, files=files, subject=subject)
    return RenderedMessage(subject, html, text, chat_title, chat_body)


def render_pdf(html: str, base_url: str | None = None) -> bytes:
    """The HTML report as PDF (weasyprint; needs the pango libraries of the system)."""
    try:
        from weasyprint import HTML  # imported here: it loads native libraries at import
    except (ImportError, OSError) as error:
        raise PdfUnavailable(
            f"cannot render PDF: weasyprint is unusable here ({error}); install the 'weasyprint' "
            "package and the Debian packages libpango-1.0-0 libpangoft2-1.0-0 (and a CJK font "
            "such as fonts-wqy-microhei for zh_CN)"
        ) from error
    pdf = HTML(string=html, base_url=base_url).write_pdf()
    assert pdf is not None
    return pdf


# --- template plumbing --------------------------------------------------------------------------


def _variables(report: Report, language: str, **extra: Any) -> dict[str, Any]:
    as_of = report.as_of.astimezone(ZoneInfo(report.timezone))
    return {
        "report": report,
        "language": language,
        "sections": report.sections,
        "incidents": report.incidents,
        "as_of_local": as_of.strftime("%Y-%m-%d %H:%M %Z"),
        "s": strings(language, report.span),
        # What the last period is compared with (the average of the earlier months, or the
        # previous quarter or year): the column the strings call `previous_avg`.
        "baseline": partial(reference, span=report.span),
        **extra,
    }


def strings(language: str, span: Span = "month") -> dict[str, Any]:
    """The words of `language` (templates/<language>/strings.html) for a report of `span`: the
    words that name the period ("this quarter", the title) come from its `spans` entry."""
    _check_language(language)
    module = _environment().get_template(f"{language}/strings.html").module
    words = dict(module.s)  # type: ignore[attr-defined]
    return {**words, **words["spans"][span]}


def incident_charts(section: IncidentSection) -> dict[str, Any]:
    """The series the incident charts draw (the sandbox lets templates read, not build, lists)."""
    months = section.months
    current = section.current.sla.by_priority
    priorities = ("P1", "P2", "P3", "P4")

    def hours(value: float | None) -> float | None:
        return None if value is None else value / 3600

    mix = [(p, [m.by_priority.get(p, 0) for m in months]) for p in priorities]
    if any(m.by_priority.get("unclassified") for m in months):
        mix.append(("unclassified", [m.by_priority.get("unclassified", 0) for m in months]))
    return {
        "mix": mix,
        "response": [m.sla.response.rate for m in months],
        "resolution": [m.sla.resolution.rate for m in months],
        "response_by_priority": [
            current[p]["response"].rate if p in current else None for p in priorities
        ],
        "resolution_by_priority": [
            current[p]["resolution"].rate if p in current else None for p in priorities
        ],
        "mtta_hours": [hours(m.mtta.median) for m in months],
        "mttr_hours": [hours(m.mttr.median) for m in months],
    }


def _render(name: str, report: Report, language: str, **extra: Any) -> str:
    template = _environment().get_template(name)
    return template.render(_variables(report, language, **extra))


def _block(name: str, block: str, report: Report, language: str, files: dict[str, str]) -> str:
    template = _environment().get_template(name)
    context = template.new_context(_variables(report, language, files=files))
    return "".join(template.blocks[block](context))


_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy(value: str) -> str:
    lines = [line.rstrip() for line in value.strip().splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines))


def _pct(value: float | None, digits: int = 1) -> str:
    return MISSING if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return MISSING
    return f"{value:,.{digits}f}"


@pass_context
def _duration(context: Context, seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    day, hour, minute = _UNITS[context.get("language", "en")]
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}{day} {hours}{hour}"
    if hours:
        return f"{hours}{hour} {minutes:02d}{minute}"
    return f"{minutes}{minute}"


def _md(value: Any) -> str:
    """Markdown-safe text for the artifact: no table breaks, links or emphasis from data."""
    return markdown_text(MISSING if value is None else value)


def _defuse(value: Any) -> str:
    """Chat text: angle brackets as look-alikes, so no chat service reads markup or mentions."""
    return (MISSING if value is None else str(value)).replace("<", "‹").replace(">", "›")


def _signed(value: float | None, kind: str = "num") -> str:
    if value is None:
        return MISSING
    sign = "+" if value > 0 else ("−" if value < 0 else "±")
    if kind == "pct":
        return f"{sign}{abs(value) * 100:.1f} pt"
    if kind == "int":  # a count against a count (not an average): no decimals
        return f"{sign}{abs(value):,.0f}"
    return f"{sign}{abs(value):,.1f}"


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    environment = template_environment(TEMPLATE_DIR)
    environment.filters.update(
        pct=_pct, num=_num, duration=_duration, md=_md, defuse=_defuse, signed=_signed
    )
    environment.globals.update(
        line_chart=charts.line_chart,
        bar_chart=charts.bar_chart,
        stacked_bars=charts.stacked_bars,
        fmt_percent=charts.percent,
        fmt_number=charts.number,
        incident_charts=incident_charts,
        section_deltas=section_deltas,
        summarise=summarise,
        MISSING=MISSING,
    )
    return environment
