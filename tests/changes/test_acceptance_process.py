"""Change acceptance end to end: the real change flow on the Prefect test server, the gateway on a
loopback port, the real SMTP peer. A change approved by link is implemented and verified, its
requester gets the acceptance mail, opens the link and rejects with a reason (reopened as the
policy says), or accepts (closed); a window left to lapse closes it at the next sweep."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from itilflow import clock
from itilflow.flows.change import remind_approvers
from itilflow.policies import Acceptance
from tests.changes.conftest import wait_for
from tests.support.approval_codes import codes_sent_to, decide_by_link, wait_for_code
from tests.support.change_policy import use_change_policy
from tests.support.csrf import post_form

pytestmark = pytest.mark.usefixtures("prefect_server")

OWNER = "owner@example.com"


@pytest.fixture(autouse=True)
def _acceptance_required(rt):
    """Any time is a window (no calendar), and the requester's acceptance is required."""
    use_change_policy(
        rt,
        maintenance_windows=[],
        freeze_windows=[],
        acceptance=Acceptance(required=True, window=timedelta(days=5), on_reject="reopen"),
    )


def plan_for(marker: Path) -> dict:
    return {
        "steps": [
            {
                "name": "switch the feature on",
                "do": {"kind": "shell", "command": f"touch {marker}"},
                "undo": {"kind": "shell", "command": f"rm -f {marker}"},
            }
        ],
        "verify": [
            {"name": "feature flag", "do": {"kind": "shell", "command": f"test -f {marker}"}}
        ],
    }


def mails_to(smtp_server, address: str, subject: str) -> list:
    return [
        m
        for m in smtp_server.mails
        if address in m.rcpt_tos and subject in str(m.message["Subject"])
    ]


def link_in(mail, verb: str) -> str:
    text = mail.message.get_body(("plain",)).get_content()
    return re.search(rf"(http://\S+/{verb}/\S+)", text).group(1)


def change_of(gateway, number: str) -> dict:
    return gateway.get(f"/api/changes/{number}").json()


def kinds_of(gateway, number: str) -> list[str]:
    return [e["kind"] for e in gateway.get(f"/api/changes/{number}/timeline").json()]


def implemented_and_verified(gateway, smtp_server, marker: Path) -> tuple[str, str]:
    """Open a change, approve it by link as chen, wait for its acceptance mail: the change's
    number and the mail's reject link (its accept link is the same page)."""
    response = gateway.post(
        "/api/changes",
        json={
            "title": "Switch on the new checkout",
            "category": "normal",
            "cis": ["shop-payment"],
            "plan": plan_for(marker),
            "requester_email": OWNER,
        },
    )
    assert response.status_code == 201, response.text
    number = response.json()["number"]
    approval = wait_for(
        "the approval mail", lambda: mails_to(smtp_server, "chen@example.com", number)
    )[0]
    link = link_in(approval, "approvals")
    assert decide_by_link(smtp_server, link, "chen@example.com", "approve").status_code == 200
    wait_for(
        "the sign-off wait", lambda: change_of(gateway, number)["status"] == "awaiting_signoff"
    )
    assert marker.exists()
    mail = wait_for(
        "the acceptance mail", lambda: mails_to(smtp_server, OWNER, f"Please accept {number}")
    )[0]
    return number, link_in(mail, "acceptance")


def decide_with_code(smtp_server, link: str, form: dict[str, str]) -> httpx.Response:
    """As the requester: press the button on the page, read the code in the mail, enter it."""
    url = link.split("?")[0]
    sent = len(codes_sent_to(smtp_server, OWNER))
    with httpx.Client(trust_env=False, timeout=30) as browser:
        shown = browser.get(link)
        assert shown.status_code == 200 and "switch the feature on" in shown.text
        pressed = post_form(browser, url, form)
        assert pressed.status_code == 200 and 'id="code"' in pressed.text, pressed.text
        code = wait_for_code(smtp_server, OWNER, nth=sent + 1)
        return post_form(browser, url, form | {"code": code})


def test_a_rejected_change_is_reopened_and_asked_for_approval_again(
    live_gateway, rt, smtp_server, tmp_path
):
    number, link = implemented_and_verified(live_gateway, smtp_server, tmp_path / "flag")
    with httpx.Client(trust_env=False, timeout=30) as browser:
        blank = post_form(browser, link.split("?")[0], {"decision": "reject", "reason": ""})
        assert blank.status_code == 409 and "needs a reason" in blank.text
    answer = decide_with_code(
        smtp_server, link, {"decision": "reject", "reason": "checkout shows no prices"}
    )
    assert answer.status_code == 200 and "rejected and reopened" in answer.text
    wait_for(
        "the new version's approvals",
        lambda: (lambda c: (c["status"], c["version"]) == ("awaiting_approval", 2))(
            change_of(live_gateway, number)
        ),
    )
    kinds = kinds_of(live_gateway, number)
    for kind in ("verify_ok", "verified", "acceptance_requested", "customer_rejected", "reopened"):
        assert kind in kinds
    timeline = live_gateway.get(f"/api/changes/{number}/timeline").json()
    rejected = next(e for e in timeline if e["kind"] == "customer_rejected")
    assert "checkout shows no prices" in rejected["message"]


def test_an_accepted_change_is_closed(live_gateway, rt, smtp_server, tmp_path):
    number, link = implemented_and_verified(live_gateway, smtp_server, tmp_path / "flag")
    answer = decide_with_code(smtp_server, link, {"decision": "accept"})
    assert answer.status_code == 200 and "accepted and closed" in answer.text
    assert change_of(live_gateway, number)["status"] == "successful"
    kinds = kinds_of(live_gateway, number)
    # The double acceptance: the engineers' verification, then the requester's.
    assert kinds.index("verified") < kinds.index("accepted")
    again = httpx.get(link, trust_env=False)
    assert again.status_code == 409 and "already used" in again.text


def test_a_lapsed_window_closes_the_change_as_accepted(live_gateway, rt, smtp_server, tmp_path):
    number, link = implemented_and_verified(live_gateway, smtp_server, tmp_path / "flag")
    assert asyncio.run(remind_approvers())["accepted_by_lapse"] == 0
    clock.advance(timedelta(days=5, minutes=1))
    assert asyncio.run(remind_approvers())["accepted_by_lapse"] == 1
    assert change_of(live_gateway, number)["status"] == "successful"
    assert "accepted_by_lapse" in kinds_of(live_gateway, number)
    wait_for("the requester's notice", lambda: mails_to(smtp_server, OWNER, "accepted by lapse"))
    late = httpx.get(link, trust_env=False)
    assert late.status_code == 409
