"""Post-incident reports of the major incidents just resolved: HTML and PDF in the data folder, a
Prefect artifact each, and the mail with the PDF to the stakeholders as plans for the delivery
pipeline."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from sqlmodel import Session

from itilflow.models import Group, Incident, Subject, get_engineer, notified_keys, session_scope
from itilflow.notifications.plans import NotificationPlan, make_plan
from itilflow.policies import Policies
from itilflow.reports import render_pdf
from itilflow.reports.post_incident import (
    PostIncidentReport,
    compute_post_incident,
    render_post_incident_html,
    render_post_incident_mail,
    render_post_incident_markdown,
)
from itilflow.reports.render import LANGUAGES
from itilflow.runtime import runtime

ACTOR = "flow:incident-resolved"


@task(name="write-post-incident-reports", retries=1, retry_delay_seconds=5)
def write_post_incident_reports(resolutions: list[tuple[int, int]]) -> list[NotificationPlan]:
    """For each (incident, n-th resolution) of a priority in problem.yaml's `post_incident`:
    the report's files and artifact, and the plan of its mail. An incident whose report was
    mailed already (a rerun) is left alone."""
    rt = runtime()
    policy = rt.policies.problem.post_incident
    folder = rt.settings.data_dir / "reports" / "post-incident"
    plans = []
    with session_scope(rt.engine) as session:
        for incident_id, resolution in resolutions:
            incident = session.get(Incident, incident_id)
            if incident is None or incident.priority not in policy.priorities:
                continue
            key = f"post-incident:{resolution}"
            subject = Subject("incident", incident_id)
            if (subject, key, "email") in notified_keys(session=session, subjects=[subject]):
                continue
            language = _language_of(incident, rt.policies)
            report = compute_post_incident(
                session, incident, resolution=resolution, policies=rt.policies
            )
            files = _write(folder, report, language)
            create_markdown_artifact(
                markdown=render_post_incident_markdown(report, language, files),
                key=f"post-incident-{report.number.lower()}",
                description=f"Post-incident report {report.number} ({report.title})",
            )
            emails = _stakeholders(session, incident, rt.policies)
            if emails:
                plans.append(_plan(incident_id, key, report, language, emails, files))
    return plans


def _language_of(incident: Incident, policies: Policies) -> str:
    chosen = policies.problem.post_incident.language or incident.language
    return chosen if chosen in LANGUAGES else policies.problem.language


def _write(folder: Path, report: PostIncidentReport, language: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    html = render_post_incident_html(report, language)
    written = {}
    for kind, data in (("html", html.encode("utf-8")), ("pdf", render_pdf(html))):
        path = folder / f"{report.file_stem}-{language}.{kind}"
        partial = path.with_name(f".{path.name}.partial")  # a reader never sees half a file
        partial.write_bytes(data)
        os.replace(partial, path)
        written[kind] = str(path.resolve())
    return written


def _stakeholders(session: Session, incident: Incident, policies: Policies) -> list[str]:
    """The addresses of problem.yaml's stakeholders of this incident, then its `recipients`."""
    policy = policies.problem.post_incident
    group = session.get(Group, incident.group_name) if incident.group_name else None
    people = {
        "assignee": incident.assignee,
        "group_lead": group.lead if group else None,
        "group_manager": group.manager if group else None,
    }
    found: list[str | None] = []
    for who in policy.stakeholders:
        if who == "reporter":
            found.append(incident.reporter_email)
        elif (name := people[who]) and (engineer := get_engineer(session=session, username=name)):
            found.append(engineer.email)
    return list(dict.fromkeys(a for a in [*found, *policy.recipients] if a))


def _plan(
    incident_id: int,
    key: str,
    report: PostIncidentReport,
    language: str,
    emails: list[str],
    files: dict[str, str],
) -> NotificationPlan:
    pdf = Path(files["pdf"])
    return make_plan(
        Subject("incident", incident_id),
        render_post_incident_mail(report, language),
        number=report.number,
        key=key,
        template="post_incident_report",
        actor=ACTOR,
        emails=emails,
        tags=[],
        attachments=[{"path": str(pdf), "filename": pdf.name, "mime_type": "application/pdf"}],
    )
