"""On call end to end: a P1's "on_call" escalation steps mail whoever is on call when each step
fires (real SMTP, the real Prefect test server, the runner), the next person after the handoff,
with the name on the timeline; and the person's shifts as iCalendar across a DST change."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import Session

from itilflow import clock, runtime
from itilflow.demo import load_people
from itilflow.dispatch.runner import Runner
from itilflow.gateway.app import create_app
from itilflow.models import get_timeline
from itilflow.policies import default_policy_dir
from tests.conftest import ALL_TAGS, make_settings, write_apprise_config
from tests.support.principals import as_person

pytestmark = pytest.mark.usefixtures("prefect_server")

BERLIN = ZoneInfo("Europe/Berlin")
# Applications' rotation in Berlin: liu and chen take turns daily at 09:00 from 2026-10-20, so
# liu has the even days (20, 22, 24, 26 ...) and chen the odd ones; Berlin leaves summer time on
# 2026-10-25 at 03:00, inside liu's shift of the 24th.
ROTATION = {
    "groups": {
        "applications": {
            "timezone": "Europe/Berlin",
            "layers": [
                {
                    "name": "daily",
                    "every": "day",
                    "handoff": "09:00",
                    "start": "2026-10-20",
                    "people": ["liu", "chen"],
                }
            ],
        }
    }
}
HANDOFF = datetime(2026, 10, 26, 9, 0, tzinfo=BERLIN)  # 08:00 UTC, chen -> liu


@pytest.fixture
def berlin_rt(tmp_path: Path, database_url, smtp_server, http_sink):
    policies = tmp_path / "policies"
    policies.mkdir()
    for source in default_policy_dir().iterdir():
        if source.name.endswith(".yaml") and source.name != "oncall.yaml":
            with source.open("rb") as read, (policies / source.name).open("wb") as write:
                shutil.copyfileobj(read, write)
    (policies / "oncall.yaml").write_text(yaml.safe_dump(ROTATION), "utf-8")
    settings = make_settings(
        tmp_path,
        policy_dir=policies,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
    )
    current = runtime.configure(settings)
    load_people(settings)
    return current


@pytest.fixture
def berlin_client(berlin_rt):
    with TestClient(create_app(berlin_rt.settings, berlin_rt.policies)) as client:
        token = berlin_rt.settings.api_token.get_secret_value()
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def run(rt) -> None:
    runner = Runner(rt.engine, concurrency=4, poll_seconds=0.05)
    await runner.run_until_idle(timeout=120)
    assert runner.failed == 0


def on_call_entries(rt, incident_id: int) -> list[tuple[str, str, list[str]]]:
    """(key, who was on call, to) of each mail delivered to the person on call."""
    with Session(rt.engine) as session:
        return [
            (entry.data["key"], entry.data["on_call"]["username"], entry.data["to"])
            for entry in get_timeline(session=session, incident_id=incident_id)
            if entry.kind == "notified"
            and entry.data.get("channel") == "email"
            and "on_call" in entry.data
        ]


async def test_on_call_steps_mail_whoever_is_on_call_then_and_the_next_after_the_handoff(
    berlin_client, berlin_rt, smtp_server, http_sink
):
    rt = berlin_rt
    clock.freeze(HANDOFF - timedelta(minutes=8))  # 08:52 in Berlin: chen's shift
    opened = berlin_client.post(
        "/api/incidents",
        json={
            "title": "Checkout down",
            "category": "software",
            "impact": "high",
            "urgency": "high",
            "reporter_email": "owner@example.com",
        },
    )
    assert opened.status_code == 201, opened.text
    incident = opened.json()
    await run(rt)
    smtp_server.clear()

    clock.freeze(HANDOFF - timedelta(minutes=2))  # the P1 chain's 5-minute "on_call" step
    await run(rt)
    (mail,) = smtp_server.wait_for(1)
    assert "chen@example.com" in mail.rcpt_tos and "liu@example.com" not in mail.rcpt_tos
    assert "Chen Jie (on_call)" in mail.message.get_body(("plain",)).get_content()
    smtp_server.clear()

    clock.freeze(HANDOFF + timedelta(minutes=2))  # the 10-minute step, after the handoff
    await run(rt)
    (mail,) = smtp_server.wait_for(1)
    assert "liu@example.com" in mail.rcpt_tos and "chen@example.com" not in mail.rcpt_tos
    assert http_sink.wait_for(1), "the on-call chat tags still get the steps"

    entries = on_call_entries(rt, incident["id"])
    assert ("timer:escalation:0:0", "chen", ["chen@example.com"]) in entries
    assert ("timer:escalation:1:0", "liu", ["liu@example.com"]) in entries
    assert entries[0][:2] == ("opened", "chen")  # the opening notification reached chen too
    with Session(rt.engine) as session:
        messages = [e.message for e in get_timeline(session=session, incident_id=incident["id"])]
    assert any(m.endswith("on call: Chen Jie (chen)") for m in messages)
    assert any(m.endswith("on call: Liu Yang (liu)") for m in messages)


async def test_a_persons_shifts_as_icalendar_keep_their_wall_clock_across_dst(
    berlin_client, berlin_rt
):
    headers = as_person(berlin_rt, "liu", ["agent"])
    start = datetime(2026, 10, 20, 0, 0, tzinfo=BERLIN)
    response = berlin_client.get(
        "/api/oncall/people/liu.ics",
        params={"start": start.isoformat(), "days": 10},
        headers=headers,
    )
    assert response.status_code == 200
    calendar = icalendar.Calendar.from_ical(response.content)
    events = [(e.decoded("dtstart"), e.decoded("dtend")) for e in calendar.walk("VEVENT")]
    # liu's days: 20, 22, 24, 26 and 28 October, each from 09:00 to 09:00 on the wall.
    assert [begin.astimezone(BERLIN).day for begin, _ in events] == [20, 22, 24, 26, 28]
    for begin, end in events:
        assert (begin.astimezone(BERLIN).hour, end.astimezone(BERLIN).hour) == (9, 9)
    lengths = {begin.astimezone(BERLIN).day: end - begin for begin, end in events}
    assert lengths[24] == timedelta(hours=25)  # the night Berlin turned its clocks back
    assert lengths[22] == lengths[26] == timedelta(hours=24)
    assert events[0][0].utcoffset() == timedelta(0)  # written in UTC: no zone to misread
