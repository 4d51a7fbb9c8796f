"""The on-call API on the real gateway app: who is on call, overrides (and who may make them),
shifts as iCalendar and the secret feed URL, each refusal beside its success."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import icalendar
import pytest
from sqlmodel import Session, select

from itilflow import clock
from itilflow.models import OnCallOverride
from tests.support.principals import as_person

# The demo's applications group: chen and liu take turns daily at 09:00 Asia/Shanghai from
# 2026-01-05 (policies/defaults/oncall.yaml). 2026-12-07 is day 336 (even): chen's day.
CHEN_DAY = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def who(client, group: str, at: datetime, headers=None) -> dict:
    response = client.get(f"/api/oncall/{group}", params={"at": at.isoformat()}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_who_is_on_call_follows_the_rotation_and_its_handoff(client, rt) -> None:
    assert who(client, "applications", CHEN_DAY)["username"] == "chen"
    before = who(client, "applications", CHEN_DAY - timedelta(seconds=1))
    assert (before["username"], before["name"], before["layer"]) == ("liu", "Liu Yang", "daily")
    assert who(client, "applications", CHEN_DAY + timedelta(days=1))["username"] == "liu"
    assert who(client, "nosuch", CHEN_DAY) == {
        **who(client, "nosuch", CHEN_DAY),
        "has_rotation": False,
        "username": None,
    }
    clock.freeze(CHEN_DAY + timedelta(hours=1))
    assert client.get("/api/oncall/applications").json()["username"] == "chen"  # now


def test_a_person_without_a_role_may_not_ask_who_is_on_call(client, rt) -> None:
    response = client.get("/api/oncall/applications", headers=as_person(rt, "li", []))
    assert response.status_code == 403


def override(client, headers, **fields) -> object:
    body = {
        "person": "liu",
        "starts_at": (CHEN_DAY + timedelta(hours=2)).isoformat(),
        "ends_at": (CHEN_DAY + timedelta(hours=6)).isoformat(),
        "note": "swap",
        **fields,
    }
    return client.post("/api/oncall/applications/overrides", json=body, headers=headers)


def stored_overrides(rt) -> list[OnCallOverride]:
    with Session(rt.engine) as session:
        return list(session.exec(select(OnCallOverride)))


def test_only_the_groups_lead_or_an_admin_may_add_and_remove_overrides(client, rt) -> None:
    member = as_person(rt, "liu", ["agent"])  # of the group, but not its lead
    other_lead = as_person(rt, "wang", ["group_lead"])  # leads hardware, not applications
    lead = as_person(rt, "chen", ["agent"])  # applications' lead in the directory
    for headers in (member, other_lead):
        refused = override(client, headers)
        assert refused.status_code == 403 and "may not change" in refused.json()["detail"]
    assert stored_overrides(rt) == []

    made = override(client, lead)
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["person"], body["created_by"]) == ("liu", "chen")
    during = who(client, "applications", CHEN_DAY + timedelta(hours=3))
    assert (during["username"], during["source"], during["scheduled"]) == (
        "liu",
        f"api:{body['id']}",
        "chen",
    )
    assert who(client, "applications", CHEN_DAY + timedelta(hours=6))["username"] == "chen"
    listed = client.get("/api/oncall/applications/overrides", headers=member)
    assert [row["id"] for row in listed.json()] == [body["id"]]

    path = f"/api/oncall/applications/overrides/{body['id']}"
    assert client.delete(path, headers=member).status_code == 403
    assert len(stored_overrides(rt)) == 1
    assert client.delete(path, headers=lead).status_code == 204
    assert client.delete(path, headers=lead).status_code == 404
    assert who(client, "applications", CHEN_DAY + timedelta(hours=3))["username"] == "chen"


def test_a_leave_applies_only_where_the_person_away_would_be(client, rt) -> None:
    made = override(
        client,
        None,
        person="lin",
        instead_of="liu",
        starts_at=CHEN_DAY.isoformat(),
        ends_at=(CHEN_DAY + timedelta(days=2)).isoformat(),
    )
    assert made.status_code == 201, made.text  # the bootstrap admin
    assert who(client, "applications", CHEN_DAY + timedelta(hours=1))["username"] == "chen"
    assert who(client, "applications", CHEN_DAY + timedelta(days=1, hours=1))["username"] == "lin"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"person": "nobody"}, "person: 'nobody' is not a person in the directory"),
        ({"instead_of": "liu"}, "instead_of: expected another person"),
        ({"ends_at": CHEN_DAY.isoformat()}, "to: expected a time after 'from'"),
    ],
)
def test_a_wrong_override_is_refused_and_says_why(client, rt, fields, expected) -> None:
    refused = override(client, None, **fields)
    assert refused.status_code == 422 and expected in refused.json()["detail"]
    assert override(client, None, starts_at="2026-12-07T10:00").status_code == 422  # no offset
    assert (
        client.post(
            "/api/oncall/nosuch/overrides",
            json={
                "person": "liu",
                "starts_at": CHEN_DAY.isoformat(),
                "ends_at": (CHEN_DAY + timedelta(hours=1)).isoformat(),
            },
        ).status_code
        == 422
    )
    assert stored_overrides(rt) == []


def shifts_of(body: bytes) -> list[tuple[datetime, datetime, str]]:
    calendar = icalendar.Calendar.from_ical(body)
    return [
        (event.decoded("dtstart"), event.decoded("dtend"), str(event["summary"]))
        for event in calendar.walk("VEVENT")
    ]


def test_shifts_as_icalendar_for_the_person_their_lead_and_nobody_else(client, rt) -> None:
    path = "/api/oncall/people/liu.ics"
    params = {"start": CHEN_DAY.isoformat(), "days": 4}
    own = client.get(path, params=params, headers=as_person(rt, "liu", ["agent"]))
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/calendar")
    shifts = shifts_of(own.content)
    assert [(start, end - start) for start, end, _ in shifts] == [
        (CHEN_DAY + timedelta(days=1), timedelta(days=1)),
        (CHEN_DAY + timedelta(days=3), timedelta(days=1)),
    ]
    assert shifts[0][2] == "On call: applications (daily)"
    lead = client.get(path, params=params, headers=as_person(rt, "chen", ["agent"]))
    assert lead.status_code == 200
    other = client.get(path, params=params, headers=as_person(rt, "li", ["group_lead"]))
    assert other.status_code == 403
    assert client.get("/api/oncall/people/nobody.ics").status_code == 404  # admin: none such


def test_the_secret_feed_opens_without_a_token_until_replaced_or_revoked(
    client, rt, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="itilflow.gateway.access")
    clock.freeze(CHEN_DAY)
    liu = as_person(rt, "liu", ["agent"])
    assert (
        client.post("/api/oncall/people/liu/feed", headers=as_person(rt, "chen")).status_code == 403
    )  # not even the lead: the feed is personal
    made = client.post("/api/oncall/people/liu/feed", headers=liu)
    assert made.status_code == 200, made.text
    feed = urlsplit(made.json()["url"]).path
    opened = client.get(feed, headers={"Authorization": ""})
    assert opened.status_code == 200
    assert len(shifts_of(opened.content)) >= 180  # every other day for a year
    token = feed.rsplit("/", 1)[1].removesuffix(".ics")
    logged = [r.getMessage() for r in caplog.records if r.name == "itilflow.gateway.access"]
    assert any("/calendars/oncall/{token}.ics" in line for line in logged), logged
    assert not any(token in line for line in logged)
    tampered = feed.replace(".ics", "x.ics")
    assert client.get(tampered, headers={"Authorization": ""}).status_code == 404

    again = urlsplit(client.post("/api/oncall/people/liu/feed", headers=liu).json()["url"]).path
    assert client.get(feed, headers={"Authorization": ""}).status_code == 404  # replaced
    assert client.get(again, headers={"Authorization": ""}).status_code == 200
    assert (
        client.delete("/api/oncall/people/liu/feed", headers=as_person(rt, "li")).status_code == 403
    )
    assert client.delete("/api/oncall/people/liu/feed", headers=liu).status_code == 204
    assert client.get(again, headers={"Authorization": ""}).status_code == 404  # revoked
