"""`itilflow doctor`'s checks one by one, against real peers (SMTP, HTTP, a database) and their
refusals; tests/test_stack.py runs the whole command against a running stack."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlmodel import Session

from itilflow import clock
from itilflow.commands.doctor import (
    check_apprise,
    check_database,
    check_policies,
    check_runner_lag,
    check_smtp,
)
from itilflow.models import create_db, get_engine
from itilflow.models.incident import Incident
from itilflow.models.trigger import FlowTrigger
from tests.support.http_sink import HttpSink
from tests.support.smtp import SmtpCapture, free_port


def test_smtp_is_ok_when_the_server_greets_and_fails_with_the_reason_when_stopped(
    smtp_server: SmtpCapture,
):
    check = check_smtp("127.0.0.1", smtp_server.port)
    assert check.ok and check.reason.startswith(f"127.0.0.1:{smtp_server.port} greets: 220 ")
    port = free_port()
    check = check_smtp("127.0.0.1", port)
    assert not check.ok and check.reason == f"127.0.0.1:{port}: Connection refused"


def test_a_bad_policy_folder_fails_naming_the_file(tmp_path: Path):
    assert check_policies(None).ok
    (tmp_path / "sla.yaml").write_text("priorities: [1, 2\n")
    check = check_policies(tmp_path)
    assert not check.ok and "sla.yaml" in check.reason, check.reason
    missing = check_policies(tmp_path / "nowhere")
    assert not missing.ok and "not found" in missing.reason


def test_apprise_checks_the_config_its_routes_and_its_hosts(tmp_path: Path, http_sink: HttpSink):
    config = tmp_path / "apprise.yaml"
    config.write_text(f"urls:\n  - {http_sink.apprise_url()}:\n    - tag: team-chat\n")
    assert check_apprise(config, ["team-chat"]).ok
    unrouted = check_apprise(config, ["team-chat", "dba-chat"])
    assert not unrouted.ok and "no service for tag(s) dba-chat" in unrouted.reason
    port = free_port()
    config.write_text(f"urls:\n  - json://127.0.0.1:{port}/chat:\n    - tag: team-chat\n")
    closed = check_apprise(config, ["team-chat"])
    assert not closed.ok and "unreachable" in closed.reason and str(port) in closed.reason
    gone = check_apprise(tmp_path / "nothing.yaml", ["team-chat"])
    assert not gone.ok and "does not exist" in gone.reason
    assert check_apprise(None, ["team-chat"]).ok  # no chat configured: nothing to reach


def test_runner_lag_is_the_oldest_due_unclaimed_trigger(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'itilflow.db'}"
    assert not check_database(f"sqlite:///{tmp_path / 'no' / 'such.db'}").ok
    engine = get_engine(url)
    create_db(engine)
    assert check_database(url).ok
    assert check_runner_lag(url, 120).reason == "no due trigger waits for the runner"
    now = clock.now()
    with Session(engine) as session:
        incident = Incident(title="disk full", description="", source="test")
        session.add(incident)
        session.commit()
        assert incident.id is not None
        for key, due, claimed in (
            ("late", now - timedelta(minutes=10), None),
            ("claimed", now - timedelta(hours=1), now + timedelta(minutes=1)),
            ("future", now + timedelta(minutes=5), None),
        ):
            session.add(
                FlowTrigger(
                    incident_id=incident.id, kind="open", key=key, due_at=due, claimed_until=claimed
                )
            )
        session.commit()
    late = check_runner_lag(url, 120)
    assert not late.ok and late.reason.startswith("the oldest due, unclaimed trigger waits 600 s")
    assert check_runner_lag(url, 900).ok
