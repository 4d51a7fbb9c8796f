"""The post-incident (fault analysis) report of a resolved major incident: its facts from the
database, and the report as HTML (weasyprint makes the PDF, as for the monthly report), a
markdown summary for the Prefect artifact, and the mail that carries the PDF.

Facts: the incident's timeline (deliveries left out: they say who was mailed, not what
happened), the impact (how long it lasted, the SLA targets it breached, the configuration
items it touched and the services that depend on them), the root cause from the linked problem
("not yet known" without one), the fix (the resolution note) and the advice (the problem's
workaround, its known error article's, and problem.yaml's `post_incident.advice`).

Templates: reports/templates/_base/post_incident/ (report.html, summary.md, mail.txt) and the
words per language in reports/templates/<language>/post_incident.html.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlmodel import Session, col, select

from itilflow.models import (
    ConfigurationItem,
    Incident,
    Problem,
    ProblemIncident,
    get_article_of,
    get_timeline,
    incident_number,
    problem_number,
)
from itilflow.notifications import RenderedMessage
from itilflow.notifications.markdown import markdown_text
from itilflow.notifications.templating import template_environment
from itilflow.policies import Policies
from itilflow.reports.render import LANGUAGES, MISSING, TEMPLATE_DIR

# Timeline kinds the report leaves out: deliveries and their failures (who was mailed).
NOT_EVENTS = frozenset({"notified", "notify_failed"})


@dataclass(frozen=True)
class Event:
    at: str  # local time, "2026-12-03 09:14"
    actor: str
    kind: str
    message: str


@dataclass(frozen=True)
class PostIncidentReport:
    number: str
    title: str
    priority: str | None
    category: str | None
    group: str | None
    assignee: str | None
    reporter: str | None
    resolution: int  # the incident's n-th resolution
    timezone: str
    opened_at: str
    resolved_at: str
    duration_seconds: float
    events: list[Event]
    sla_breaches: list[str]
    cis: list[str]
    services: list[str]
    problem: str | None  # PRB-000003
    root_cause: str | None
    root_cause_category: str | None
    fix: str
    advice: list[str] = field(default_factory=list)

    @property
    def file_stem(self) -> str:
        return f"post-incident-{self.number}-{self.resolution}"


def compute_post_incident(
    session: Session, incident: Incident, *, resolution: int, policies: Policies
) -> PostIncidentReport:
    assert incident.id is not None
    zone = ZoneInfo(policies.report.timezone)
    timeline = get_timeline(session=session, incident_id=incident.id)
    resolved = [e for e in timeline if e.kind == "resolved"]
    resolved_at = incident.resolved_at or (resolved[-1].at if resolved else incident.updated_at)
    problem = _problem_of(session, incident.id)
    cis = _cis_of(session, incident)
    return PostIncidentReport(
        number=incident_number(incident.id),
        title=incident.title,
        priority=incident.priority,
        category=incident.category,
        group=incident.group_name,
        assignee=incident.assignee,
        reporter=incident.reporter_name or incident.reporter_email,
        resolution=resolution,
        timezone=policies.report.timezone,
        opened_at=_local(incident.opened_at, zone),
        resolved_at=_local(resolved_at, zone),
        duration_seconds=(resolved_at - incident.opened_at).total_seconds(),
        events=[
            Event(_local(e.at, zone), e.actor, e.kind, e.message)
            for e in timeline
            if e.kind not in NOT_EVENTS
        ],
        sla_breaches=[e.message or e.kind for e in timeline if e.kind == "sla_breached"],
        cis=cis,
        services=_services_on(session, cis),
        problem=problem_number(problem.id) if problem else None,
        root_cause=(problem.root_cause.strip() or None) if problem else None,
        root_cause_category=problem.root_cause_category if problem else None,
        fix=resolved[-1].message if resolved else "",
        advice=_advice(session, problem, policies.problem.post_incident.advice),
    )


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _problem_of(session: Session, incident_id: int) -> Problem | None:
    """The newest problem the incident is linked to."""
    link = session.exec(
        select(ProblemIncident)
        .where(col(ProblemIncident.incident_id) == incident_id)
        .order_by(col(ProblemIncident.linked_at).desc(), col(ProblemIncident.id).desc())
    ).first()
    return session.get(Problem, link.problem_id) if link else None


def _cis_of(session: Session, incident: Incident) -> list[str]:
    """The incident's configuration item and those of the incidents grouped under it."""
    children = session.exec(
        select(Incident.ci_name).where(col(Incident.parent_id) == incident.id)
    ).all()
    return sorted({name for name in (incident.ci_name, *children) if name})


def _services_on(session: Session, cis: list[str]) -> list[str]:
    """The configuration items that depend on any of `cis` (the services they carry)."""
    if not cis:
        return []
    items = session.exec(select(ConfigurationItem)).all()
    return sorted(i.name for i in items if set(i.depends_on) & set(cis) and i.name not in cis)


def _advice(session: Session, problem: Problem | None, policy_text: str) -> list[str]:
    advice = []
    if problem is not None:
        if problem.workaround.strip():
            advice.append(problem.workaround.strip())
        article = get_article_of(session=session, problem_id=problem.id or 0)
        if article is not None and article.workaround.strip() not in ("", *advice):
            advice.append(article.workaround.strip())
    if policy_text.strip():
        advice.append(policy_text.strip())
    return advice


# --- rendering ----------------------------------------------------------------------------------


def render_post_incident_html(report: PostIncidentReport, language: str) -> str:
    return (
        _environment()
        .get_template("_base/post_incident/report.html")
        .render(_variables(report, language))
    )


def render_post_incident_markdown(
    report: PostIncidentReport, language: str, files: dict[str, str]
) -> str:
    template = _environment().get_template("_base/post_incident/summary.md")
    return template.render(_variables(report, language, files=files)).strip() + "\n"


def render_post_incident_mail(report: PostIncidentReport, language: str) -> RenderedMessage:
    """Subject, text and HTML of the mail that carries the PDF (the chat fields: its subject)."""
    template = _environment().get_template("_base/post_incident/mail.txt")
    context = template.new_context(_variables(report, language))
    subject = " ".join("".join(template.blocks["subject"](context)).split())
    text = "".join(template.blocks["body"](context)).strip()
    html = (
        _environment()
        .get_template("_base/post_incident/mail.html")
        .render(_variables(report, language, text=text))
    )
    return RenderedMessage(subject, html, text, subject, text)


def _variables(report: PostIncidentReport, language: str, **extra: Any) -> dict[str, Any]:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; languages: {', '.join(LANGUAGES)}")
    words = _environment().get_template(f"{language}/post_incident.html").module
    return {"r": report, "language": language, "s": dict(words.s), **extra}  # type: ignore[attr-defined]


def _duration(seconds: float, language: str = "en") -> str:
    units = {"en": ("d", "h", "m"), "zh_CN": ("天", "小时", "分")}[language]
    minutes = int(round(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}{units[0]}"] if days else []
    return " ".join([*parts, f"{hours}{units[1]}", f"{minutes:02d}{units[2]}"])


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    environment = template_environment(TEMPLATE_DIR)
    environment.filters.update(
        duration=_duration, md=lambda v: markdown_text(MISSING if v is None else v)
    )
    environment.globals.update(MISSING=MISSING)
    return environment
