"""Who may send a comment to the reporter, and what is kept for delivery (the delivery itself
is in test_mail_e2e.py): the real gateway app, no engine."""

from __future__ import annotations

from sqlmodel import Session, select

from itilflow.models import FlowTrigger
from tests.support.principals import as_person


def open_incident(client, **fields) -> dict:
    payload = {"title": "Mailbox full", "reporter_email": "ada@customer.example", **fields}
    response = client.post("/api/incidents", json=payload)
    assert response.status_code == 201, response.text
    return response.json()


def kept_mails(rt, incident_id: int) -> list[FlowTrigger]:
    with Session(rt.engine) as session:
        return [
            t
            for t in session.exec(select(FlowTrigger).where(FlowTrigger.incident_id == incident_id))
            if t.kind == "notify"
        ]


def test_a_public_comment_keeps_one_mail_for_the_reporter_in_the_thread(client, rt):
    ref = open_incident(client)
    said = client.post(
        f"/api/incidents/{ref['number']}/comment",
        json={"note": "We are on it.", "visibility": "public"},
        headers=as_person(rt, "lin"),
    )
    assert said.status_code == 200, said.text
    [kept] = kept_mails(rt, ref["id"])
    plan = kept.data["plan"]
    assert plan["emails"] == ["ada@customer.example"]
    assert plan["template"] == "reporter_comment"
    assert plan["headers"]["Message-ID"].startswith(f"<itilflow.{ref['number']}.reporter_comment")
    assert "We are on it." in plan["message"]["text"]
    assert "Lin Na" in plan["message"]["text"]  # the person's name, not their username


def test_an_internal_comment_mails_nobody(client, rt):
    ref = open_incident(client)
    said = client.post(f"/api/incidents/{ref['number']}/comment", json={"note": "fishy"})
    assert said.status_code == 200
    assert kept_mails(rt, ref["id"]) == []


def test_no_reporter_address_no_mail(client, rt):
    ref = open_incident(client, reporter_email=None)
    said = client.post(
        f"/api/incidents/{ref['number']}/comment",
        json={"note": "noted", "visibility": "public"},
    )
    assert said.status_code == 200
    assert kept_mails(rt, ref["id"]) == []


def test_a_reporter_may_not_comment_to_reporters_through_the_api(client, rt):
    ref = open_incident(client)
    refused = client.post(
        f"/api/incidents/{ref['number']}/comment",
        json={"note": "spoofed", "visibility": "public"},
        headers=as_person(rt, "chen", roles=("reporter",)),
    )
    assert refused.status_code == 403
    assert kept_mails(rt, ref["id"]) == []


def test_visibility_belongs_to_comments_only(client, rt):
    ref = open_incident(client)
    refused = client.post(
        f"/api/incidents/{ref['number']}/acknowledge",
        json={"note": "", "visibility": "public"},
    )
    assert refused.status_code == 422
    unknown = client.post(
        f"/api/incidents/{ref['number']}/comment", json={"note": "x", "visibility": "everyone"}
    )
    assert unknown.status_code == 422
    assert kept_mails(rt, ref["id"]) == []
