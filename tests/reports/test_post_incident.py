"""The post-incident report: a P1 resolved through the API is reported by the resolved flow on the
Prefect test server (the runner starts it), rendered by weasyprint, kept in the data folder and
as an artifact, and mailed with its PDF through the real SMTP peer; poppler reads the PDF back.
The facts and the Chinese words are checked without the engine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlmodel import Session

from itilflow import clock
from itilflow.dispatch.runner import Runner
from itilflow.models import Incident, Problem, ProblemIncident, session_scope
from itilflow.reports.post_incident import compute_post_incident, render_post_incident_html
from tests.flows.test_incident_flow import MONDAY_MORNING, open_incident

ROOT_CAUSE = "The connection pool was capped at 10 after the October upgrade"
FIX = "Raised the pool to 200 connections and restarted the payment service"


def link_problem(rt, incident_id: int, root_cause: str = ROOT_CAUSE) -> None:
    with session_scope(rt.engine) as session:
        problem = Problem(
            title="Payment timeouts",
            match_kind="ci",
            match_value="shop-payment",
            root_cause=root_cause,
            root_cause_category="configuration" if root_cause else None,
            workaround="Restart the payment service when the pool is exhausted",
        )
        session.add(problem)
        session.flush()
        assert problem.id is not None
        session.add(ProblemIncident(problem_id=problem.id, incident_id=incident_id))


def pdf_text(pdf: bytes, folder: Path) -> str:
    path = folder / "report.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", path, folder / "page"], check=True
    )
    assert (folder / "page-1.png").stat().st_size > 1000  # a page was drawn
    done = subprocess.run(["pdftotext", "-layout", path, "-"], check=True, capture_output=True)
    return " ".join(done.stdout.decode().split())


async def artifact_markdown(key: str, data_dir: Path) -> str:
    """This test's artifact of that key: the session's Prefect server keeps other tests' too,
    whose incidents are numbered from 1 as well; ours names the file under our data folder."""
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=50
        )
    ours = [a.data for a in found if str(data_dir) in str(a.data).replace("\\", "")]
    return ours[0] if ours else ""


@pytest.mark.usefixtures("prefect_server")
async def test_a_resolved_p1_is_reported_and_mailed_as_pdf(client, rt, smtp_server, tmp_path):
    clock.freeze(MONDAY_MORNING)
    ref = open_incident(client, ci="shop-payment")
    await Runner(rt.engine, concurrency=4, poll_seconds=0.05).run_until_idle(timeout=120)
    incident = client.get(f"/api/incidents/{ref['id']}").json()
    assert incident["priority"] == "P1"
    link_problem(rt, ref["id"])
    clock.freeze(MONDAY_MORNING.replace(hour=4, minute=30))  # 2 h 30 min later
    smtp_server.clear()
    resolved = client.post(f"/api/incidents/{ref['id']}/resolve", json={"note": FIX})
    assert resolved.status_code == 200, resolved.text
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0

    mails = [m for m in smtp_server.mails if "Post-incident report" in m.message["Subject"]]
    assert len(mails) == 1
    mail = mails[0].message
    # The stakeholders: the reporter, the applications group's lead and its manager.
    assert set(mails[0].rcpt_tos) == {"owner@example.com", "chen@example.com", "zhou@example.com"}
    (attachment,) = list(mail.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    text = pdf_text(attachment.get_content(), tmp_path)
    for expected in (
        ROOT_CAUSE,
        FIX,
        "Timeline",
        "classified",
        "assigned",
        "2h 30m",
        ref["number"],
    ):
        assert expected in text, expected
    assert "Restart the payment service when the pool is exhausted" in text  # the advice

    kept = rt.settings.data_dir / "reports" / "post-incident"
    assert {p.suffix for p in kept.iterdir()} == {".html", ".pdf"}
    assert ROOT_CAUSE in await artifact_markdown(
        f"post-incident-{ref['number'].lower()}", rt.settings.data_dir
    )

    # Run again (a retried batch): the report is not mailed twice.
    smtp_server.clear()
    from itilflow.flows.incident import Resolution, incidents_resolved

    await incidents_resolved([Resolution(incident_id=ref["id"], resolution=1, priority="P1")])
    assert not [m for m in smtp_server.mails if "Post-incident" in m.message["Subject"]]


def test_without_a_root_cause_the_report_says_not_yet_known_in_both_languages(rt):
    with session_scope(rt.engine) as session:
        incident = Incident(
            title="Checkout down",
            priority="P1",
            ci_name="shop-payment",
            reporter_email="owner@example.com",
        )
        session.add(incident)
        session.flush()
        assert incident.id is not None
        incident_id = incident.id
    link_problem(rt, incident_id, root_cause="")
    with Session(rt.engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        report = compute_post_incident(session, incident, resolution=1, policies=rt.policies)
    assert report.root_cause is None and report.problem == "PRB-000001"
    english = render_post_incident_html(report, "en")
    assert "Not yet known" in english and "under analysis in PRB-000001" in english
    chinese = render_post_incident_html(report, "zh_CN")
    assert "故障分析报告" in chinese and "尚未查明" in chinese
    assert rt.policies.problem.post_incident.advice in chinese  # the policy's advice


def test_markup_in_the_records_is_text_in_the_report(rt):
    hostile = "<script>alert('x')</script>"
    with session_scope(rt.engine) as session:
        incident = Incident(title=hostile, priority="P1", description=hostile)
        session.add(incident)
        session.flush()
        assert incident.id is not None
        incident_id = incident.id
    link_problem(rt, incident_id, root_cause=hostile)
    with Session(rt.engine) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        report = compute_post_incident(session, incident, resolution=1, policies=rt.policies)
    for language in ("en", "zh_CN"):
        html = render_post_incident_html(report, language)
        assert hostile not in html and "&lt;script&gt;" in html
