"""Proactive notices end to end: a real TLS server whose certificate expires in 10 days and
Debian's node_exporter filling a disk, inspected by the real flow on the test Prefect server;
the owner groups' and the customers' mails over real SMTP; the owner group accepts through the
gateway, which makes the standard change from the template for the proposed window; a re-run
does not duplicate, and a recovery closes an undecided notice as not needed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from itilflow import clock
from itilflow.flows.inspection import patrol_inspection
from itilflow.models import Change, ProactiveNotice, get_proactive_timeline
from itilflow.policies import default_policy_dir, in_maintenance_window
from itilflow.policies.loader import FILES
from itilflow.settings import Settings
from tests.conftest import ALL_TAGS, make_settings, write_apprise_config
from tests.inspections.servers import NodeExporter, tls_server
from tests.support.principals import as_person

pytestmark = pytest.mark.usefixtures("prefect_server")


class Edge:
    def __init__(self, workdir: Path) -> None:
        self.node = NodeExporter(workdir / "node")
        self.tls, self.ca = tls_server(workdir, days=10)

    def stop(self) -> None:
        for peer in (self.tls, self.node):
            peer.stop()


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    peers = Edge(tmp_path_factory.mktemp("proactive-peers"))
    try:
        yield peers
    finally:
        peers.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_server, http_sink, edge: Edge) -> Settings:
    edge.node.set_filesystem(used_percent=60.0)
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    for filename, _ in FILES.values():
        source = default_policy_dir().joinpath(filename)
        (policy_dir / filename).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    tls = {"type": "tls", "host": "127.0.0.1", "port": edge.tls.port, "ca_file": str(edge.ca)}
    node = {
        "type": "node_exporter",
        "url": edge.node.url,
        "metrics": ["filesystem", "filesystem_fill"],
    }
    inspection = {
        "timeout": "2s",
        "retries": 0,
        "groups": {
            "edge": {
                "schedule": "0 * * * *",
                "targets": {
                    "shop-tls": {"ci": "shop-web-02", "checks": [tls]},
                    "db-node": {"ci": "db-2", "checks": [node]},
                },
            }
        },
    }
    (policy_dir / "inspection.yaml").write_text(yaml.safe_dump(inspection))
    return make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
        policy_dir=policy_dir,
    )


CIS = [
    {
        "name": "shop-web-02",
        "kind": "server",
        "criticality": "medium",
        "owner_group": "applications",
        "customer_contact": "shop-owner@example.com",
        "customer_language": "zh_CN",
        "time_zone": "Europe/Berlin",
    },
    {
        "name": "db-2",
        "kind": "database",
        "criticality": "medium",
        "owner_group": "dba",
        "customer_contact": "erp-owner@example.com",
        "attributes": {"volume": "vg0/data"},
    },
]


async def inspect() -> dict:
    state = await patrol_inspection(group="edge", return_state=True)
    assert state.is_completed(), state.message
    return await state.result()


def notices(rt) -> dict[str, ProactiveNotice]:
    with Session(rt.engine) as session:
        rows = session.exec(select(ProactiveNotice).order_by(ProactiveNotice.id)).all()
    return {f"{row.ci_name}:{row.kind}:{row.id}": row for row in rows}


def mail_to(smtp_server, address: str) -> list[EmailMessage]:
    return [m.message for m in smtp_server.mails if address in m.rcpt_tos]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


async def test_foreseen_trouble_is_proposed_mailed_accepted_and_never_duplicated(
    rt, client, smtp_server, edge: Edge
) -> None:
    admin = client.headers["Authorization"]
    for ci in CIS:
        made = client.post("/api/cis", json=ci, headers={"Authorization": admin})
        assert made.status_code == 201, made.text
    assert client.get("/api/cis/shop-web-02").json()["customer_contact"] == (
        "shop-owner@example.com"
    )

    # The certificate expires in 10 days, inside the 21-day horizon: a notice at once. The disk
    # has no prediction yet (its results do not span an hour).
    first = await inspect()
    [cert] = notices(rt).values()
    assert first["proactive"] == {cert.number: "proposed"}
    assert (cert.ci_name, cert.kind, cert.status) == (
        "shop-web-02",
        "certificate_expiry",
        "proposed",
    )
    assert cert.item == f"127.0.0.1:{edge.tls.port}"
    assert abs(cert.predicted_at - (clock.now() + timedelta(days=10))) < timedelta(hours=1)
    assert cert.template == "renew-certificate"
    assert cert.parameters == {"host": "shop-web-02", "domain": "127.0.0.1"}
    # The next maintenance window at least an hour ahead, read in the CI's time zone.
    assert cert.time_zone == "Europe/Berlin"
    berlin = rt.policies.change.model_copy(update={"timezone": "Europe/Berlin"})
    assert cert.proposed_start >= clock.now() + timedelta(hours=1) - timedelta(minutes=1)
    assert in_maintenance_window(berlin, cert.proposed_start)
    assert cert.proposed_end - cert.proposed_start == timedelta(hours=2)

    # The owner group (applications: no group address, so one mail to its on-duty members) gets the
    # proposal with the link; the customer the notice, in Chinese, with the window in Berlin.
    smtp_server.wait_for(2, timeout=20)
    [proposal] = mail_to(smtp_server, "chen@example.com")
    assert mail_to(smtp_server, "liu@example.com") == [proposal]
    assert proposal["Subject"].startswith(f"[{cert.number}] Proposed change for shop-web-02")
    body = text_of(proposal)
    start_local = cert.proposed_start.astimezone(berlin.zone).strftime("%Y-%m-%d %H:%M")
    assert start_local in body and "renew-certificate" in body
    assert f"http://testserver/proactive/{cert.number}" in body
    [customer] = mail_to(smtp_server, "shop-owner@example.com")
    assert "证书即将到期" in customer["Subject"]
    assert start_local in text_of(customer) and "Europe/Berlin" in text_of(customer)

    # An hour later the disk is 10 points fuller: full in 3 hours, inside 7 days. The
    # certificate's notice is updated in place (no second one, no second mail).
    clock.advance(timedelta(hours=1))
    edge.node.set_filesystem(used_percent=70.0)
    second = await inspect()
    found = notices(rt)
    assert len(found) == 2
    disk = next(n for n in found.values() if n.kind == "disk_fill")
    assert second["proactive"] == {disk.number: "proposed"}
    assert (disk.ci_name, disk.item, disk.template) == ("db-2", "/srv/data", "add-disk-space")
    assert disk.parameters == {"host": "db-2", "volume": "vg0/data", "gigabytes": 20}
    assert disk.time_zone == "Asia/Shanghai"  # the CI has none: change.yaml's
    smtp_server.wait_for(4, timeout=20)
    [dba] = mail_to(smtp_server, "sun@example.com")
    assert "/srv/data full around" in dba["Subject"]
    [erp] = mail_to(smtp_server, "erp-owner@example.com")
    assert "Your disk /srv/data on db-2 will soon be full" in erp["Subject"]
    assert "We propose expanding it" in text_of(erp)
    assert len(mail_to(smtp_server, "shop-owner@example.com")) == 1

    # Who may decide: an agent of another group may not, nor a reporter; nobody anonymous.
    wang = as_person(rt, "wang", ["agent"])
    refused = client.post(f"/api/proactive/{cert.number}/accept", json={}, headers=wang)
    assert refused.status_code == 403 and "owner group (applications)" in refused.json()["detail"]
    reporter = as_person(rt, "li", ["reporter"])
    assert client.get("/api/proactive", headers=reporter).status_code == 403
    assert (
        client.post(
            f"/api/proactive/{cert.number}/decline", json={"reason": "no"}, headers=reporter
        ).status_code
        == 403
    )
    assert client.get("/api/proactive", headers={"Authorization": ""}).status_code == 401
    chen = as_person(rt, "chen", ["agent"])
    assert (
        client.post(
            f"/api/proactive/{disk.number}/decline", json={"reason": "not mine"}, headers=chen
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"/api/proactive/{cert.number}/decline", json={"reason": "  "}, headers=chen
        ).status_code
        == 422
    )

    # The owner group accepts: a standard change from the template, for the proposed window,
    # requested by the one who accepted.
    listed = client.get("/api/proactive", params={"status": "proposed"}, headers=chen)
    assert [n["number"] for n in listed.json()] == [disk.number, cert.number]
    accepted = client.post(f"/api/proactive/{cert.number}/accept", json={}, headers=chen)
    assert accepted.status_code == 201, accepted.text
    change_out = accepted.json()["change"]
    assert accepted.json()["notice"]["status"] == "accepted"
    with Session(rt.engine) as session:
        change = session.get(Change, change_out["id"])
        assert change is not None
        assert (change.category, change.requester, change.ci_names) == (
            "standard",
            "chen",
            ["shop-web-02"],
        )
        assert change.planned_start == cert.proposed_start
        assert change.planned_end == cert.proposed_end
        assert "certbot" in str(change.plan)
        kinds = [e.kind for e in get_proactive_timeline(session=session, proactive_id=cert.id)]
    assert kinds == ["proposed", "notified", "notified", "accepted"]
    again = client.post(f"/api/proactive/{cert.number}/accept", json={}, headers=chen)
    assert again.status_code == 409

    # A re-run: the same two notices, no new mail.
    clock.advance(timedelta(minutes=10))
    edge.node.set_filesystem(used_percent=71.0)
    third = await inspect()
    assert third["proactive"] == {}
    assert sorted(notices(rt)) == sorted(found)
    assert len(smtp_server.mails) == 4

    # The disk stops filling (the data was cleaned up): the undecided notice is not needed.
    clock.advance(timedelta(minutes=10))
    edge.node.set_filesystem(used_percent=40.0)
    fourth = await inspect()
    assert fourth["proactive"] == {disk.number: "not_needed"}
    now = {n.kind: n for n in notices(rt).values()}
    assert now["disk_fill"].status == "not_needed" and now["disk_fill"].cleared_at is not None
    assert now["certificate_expiry"].status == "accepted"
    assert now["certificate_expiry"].cleared_at is None
    declined = client.post(
        f"/api/proactive/{disk.number}/decline",
        json={"reason": "late"},
        headers=as_person(rt, "sun", ["agent"]),
    )
    assert declined.status_code == 409
