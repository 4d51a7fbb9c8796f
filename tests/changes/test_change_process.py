"""Changes end to end: real files and a real service changed, approved by email link and the mailed
code in a real browser, verified, and rolled back when verification fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.changes.conftest import wait_for
from tests.support.approval_codes import decide_by_link, wait_for_code
from tests.support.change_policy import without_calendar
from tests.support.change_service import ConfigService
from tests.support.chromium import headless_chromium
from tests.support.csrf import post_form

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(autouse=True)
def _any_time_is_a_window(rt):
    """These changes have no planned start: without windows and freezes they run once
    approved, whatever the date (with them they would wait for tonight's window)."""
    without_calendar(rt)


def plan_for(config: Path, service_url: str, expect: str) -> dict:
    backup = config.with_suffix(".bak")
    return {
        "backup": [
            {"name": "save config", "do": {"kind": "shell", "command": f"cp {config} {backup}"}}
        ],
        "steps": [
            {
                "name": "bump version",
                "do": {"kind": "shell", "command": f"sed -i s/version=1/version=2/ {config}"},
                "undo": {"kind": "shell", "command": f"cp {backup} {config}"},
            }
        ],
        "verify": [
            {
                "name": "health",
                "do": {"kind": "http", "url": f"{service_url}/health", "expect_text": expect},
            }
        ],
        "rollback_verify": [
            {
                "name": "health",
                "do": {"kind": "http", "url": f"{service_url}/health", "expect_text": "version=1"},
            }
        ],
    }


def approval_links(smtp_server, approver_email: str) -> dict[str, str]:
    mail = wait_for(
        f"the approval mail to {approver_email}",
        lambda: next((m for m in smtp_server.mails if approver_email in m.rcpt_tos), None),
    )
    text = mail.message.get_body(("plain",)).get_content()
    return {
        decision: re.search(rf"(http://\S+/approvals/\S+\?decision={decision})", text).group(1)
        for decision in ("approve", "reject")
    }


def status_of(gateway, number: str) -> str:
    return gateway.get(f"/api/changes/{number}").json()["status"]


def open_change(gateway, plan: dict) -> dict:
    response = gateway.post(
        "/api/changes",
        json={
            "title": "Upgrade the payment service config",
            "category": "normal",
            "cis": ["shop-payment"],
            "plan": plan,
            "requester_email": "owner@example.com",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def click_in_browser(url: str, button: str, tmp_path: Path, read_code: Callable[[], str]) -> str:
    """Open the link in headless Chromium, press a button, and type the code from the mail
    (`read_code`) into the page that asks for it, as the approver would."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with headless_chromium(tmp_path) as driver:
        driver.get(url)
        driver.save_screenshot(str(tmp_path / "approval-page.png"))
        driver.find_element(By.ID, button).click()
        waiting = WebDriverWait(
            driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        )
        # The next page asks for the code mailed to the approver.
        waiting.until(lambda d: d.find_element(By.ID, "code"))
        assert "c***@example.com" in driver.find_element(By.ID, "message").text
        driver.save_screenshot(str(tmp_path / "approval-code.png"))
        driver.find_element(By.ID, "code").send_keys(read_code())
        driver.find_element(By.ID, "confirm").click()
        # The result page is the one without a code field; wait for it to replace the form.
        message = waiting.until(
            lambda d: not d.find_elements(By.ID, "code") and d.find_element(By.ID, "message").text
        )
        driver.save_screenshot(str(tmp_path / "approval-result.png"))
        return message


def test_a_change_approved_in_the_browser_is_implemented_and_verified(
    live_gateway, rt, smtp_server, tmp_path
):
    config = tmp_path / "app.conf"
    config.write_text("version=1\n")
    with ConfigService(config) as service:
        change = open_change(live_gateway, plan_for(config, service.url, "version=2"))
        links = approval_links(smtp_server, "chen@example.com")

        # A mail scanner fetching the link decides nothing.
        scanned = httpx.get(links["approve"], trust_env=False)
        assert scanned.status_code == 200 and "<form" in scanned.text
        assert status_of(live_gateway, change["number"]) == "awaiting_approval"

        page = click_in_browser(
            links["approve"],
            "approve",
            tmp_path,
            read_code=lambda: wait_for_code(smtp_server, "chen@example.com"),
        )
        assert "recorded" in page

        wait_for(
            "the change to finish",
            lambda: status_of(live_gateway, change["number"]) == "successful",
        )
        assert config.read_text() == "version=2\n"
        assert httpx.get(f"{service.url}/health", trust_env=False).text == "ok version=2"

    replay = httpx.post(
        links["approve"].split("?")[0], data={"decision": "approve"}, trust_env=False
    )
    assert replay.status_code == 409 and "already used" in replay.text
    kinds = [
        e["kind"] for e in live_gateway.get(f"/api/changes/{change['number']}/timeline").json()
    ]
    for kind in (
        "risk_assessed",
        "approval_requested",
        "approved",
        "approved",
        "implementation_started",
        "backup_ok",
        "step_ok",
        "verify_ok",
        "reviewed",
    ):
        assert kind in kinds
    review = live_gateway.get(f"/api/changes/{change['number']}").json()["review"]
    assert review["outcome"] == "successful"


def test_a_change_whose_verification_fails_is_rolled_back(live_gateway, rt, smtp_server, tmp_path):
    config = tmp_path / "app.conf"
    config.write_text("version=1\n")
    with ConfigService(config) as service:
        change = open_change(live_gateway, plan_for(config, service.url, "version=3"))
        links = approval_links(smtp_server, "sun@example.com")
        decided = decide_by_link(smtp_server, links["approve"], "sun@example.com", "approve", "go")
        assert decided.status_code == 200, decided.text
        wait_for("the rollback", lambda: status_of(live_gateway, change["number"]) == "rolled_back")
        assert config.read_text() == "version=1\n"
        assert httpx.get(f"{service.url}/health", trust_env=False).text == "ok version=1"
    entries = live_gateway.get(f"/api/changes/{change['number']}/timeline").json()
    kinds = [e["kind"] for e in entries]
    assert (
        kinds.index("verify_failed")
        < kinds.index("rollback_ok")
        < kinds.index("rollback_verify_ok")
    )
    # The status is stored before the requester is told: wait for the mail, do not race it.
    outcome_mail = wait_for(
        "the outcome mail",
        lambda: [m for m in smtp_server.mails if "owner@example.com" in m.rcpt_tos],
    )
    assert "rolled back" in outcome_mail[-1].message["Subject"]


def test_a_failed_rollback_opens_a_p1_incident(live_gateway, rt, smtp_server, tmp_path):
    config = tmp_path / "app.conf"
    config.write_text("version=1\n")
    with ConfigService(config) as service:
        plan = plan_for(config, service.url, "version=3")
        plan["steps"][0]["undo"] = {"kind": "shell", "command": "exit 3"}
        change = open_change(live_gateway, plan)
        links = approval_links(smtp_server, "zhao@example.com")
        decide_by_link(smtp_server, links["reject"], "zhao@example.com", "approve")
        wait_for(
            "the failed rollback",
            lambda: status_of(live_gateway, change["number"]) == "rollback_failed",
        )
    incident_id = wait_for(
        "the incident",
        lambda: live_gateway.get(f"/api/changes/{change['number']}").json()["incident_id"],
    )
    incident = live_gateway.get(f"/api/incidents/{incident_id}").json()
    assert incident["priority"] == "P1"
    assert change["number"] in incident["title"]


def test_a_rejection_ends_the_change_and_tells_the_requester(
    live_gateway, rt, smtp_server, tmp_path
):
    config = tmp_path / "app.conf"
    config.write_text("version=1\n")
    change = open_change(live_gateway, plan_for(config, "http://127.0.0.1:9", "x"))
    links = approval_links(smtp_server, "chen@example.com")
    confirm = httpx.get(links["reject"], trust_env=False)
    assert "Reject" in confirm.text
    decide_by_link(smtp_server, links["reject"], "chen@example.com", "reject", "no")
    wait_for("the rejection", lambda: status_of(live_gateway, change["number"]) == "rejected")
    assert config.read_text() == "version=1\n"
    wait_for(
        "the requester's mail",
        lambda: [m for m in smtp_server.mails if "owner@example.com" in m.rcpt_tos],
    )


def test_approvers_can_decide_from_the_decide_change_form(
    live_gateway, rt, smtp_server, tmp_path, change_engine
):
    """What the Prefect UI's `decide-change` form sends (the deployment enforces the flow's
    parameter schema): the decision with the code the link page mailed to the approver, who is
    the one it was mailed to (a typed name counts for nothing). No run waited meanwhile: the
    change's first run ended once the approval mails were out."""
    import asyncio

    from prefect.exceptions import ParameterTypeError, SignatureMismatchError
    from prefect.flows import load_flow_from_entrypoint

    from itilflow.flows.change import decide_change

    config = tmp_path / "app.conf"
    config.write_text("version=1\n")
    with ConfigService(config) as service:
        change = open_change(live_gateway, plan_for(config, service.url, "version=2"))
        links = approval_links(smtp_server, "chen@example.com")
        number = change["number"]
        wait_for(
            "the first run to end", lambda: not any(t.is_alive() for t in change_engine.threads)
        )

        schema_of = load_flow_from_entrypoint("flows/change.py:decide_change")
        for bad in ({}, {"change": number, "approver": "mallory", "decision": "approve"}):
            with pytest.raises((ParameterTypeError, SignatureMismatchError)):  # decides nothing
                schema_of.validate_parameters(bad)
        outsider = asyncio.run(decide_change(change=number, decision="approve", code="000000"))
        assert outsider.startswith("refused"), outsider
        assert status_of(live_gateway, number) == "awaiting_approval"
        # Chen presses Approve on the link's page and types the mailed code into the form.
        with httpx.Client(trust_env=False) as browser:  # keeps the page's CSRF cookie
            pressed = post_form(browser, links["approve"].split("?")[0], {"decision": "approve"})
        assert pressed.status_code == 200, pressed.text
        code = wait_for_code(smtp_server, "chen@example.com")
        carried = asyncio.run(
            decide_change(change=number, decision="approve", code=code, comment="from the UI")
        )
        assert carried == "successful", carried  # the change carried on in the form's run
    entries = live_gateway.get(f"/api/changes/{number}/timeline").json()
    refused = [e for e in entries if e["kind"] == "approval_refused"]
    assert len(refused) == 1 and "no code to approve" in refused[0]["message"], refused
    assert not any(e["actor"] in ("zhao", "mallory") for e in entries), entries
    approved = [e for e in entries if e["kind"] == "approved" and "prefect-ui" in e["message"]]
    assert [e["actor"] for e in approved] == ["chen"], entries


def test_the_cli_submits_the_example_change_and_shows_its_timeline(
    live_gateway, rt, smtp_server, monkeypatch, capsys
):
    from pathlib import Path

    from itilflow.cli import main

    for name, value in {
        "ITILFLOW_API_URL": rt.settings.public_url,
        "ITILFLOW_API_TOKEN": rt.settings.api_token.get_secret_value(),
    }.items():
        monkeypatch.setenv(name, value)
    # A client needs the URL and a token only: the signing key stays with the server.
    monkeypatch.delenv("ITILFLOW_SECRET_KEY", raising=False)
    example = Path(__file__).resolve().parents[2] / "docs" / "examples" / "change.yaml"
    assert main(["change", "submit", str(example)]) == 0
    number = capsys.readouterr().out.strip()  # the number alone, for `CHG=$(...)`
    assert number.startswith("CHG-")
    links = approval_links(smtp_server, "chen@example.com")
    decide_by_link(smtp_server, links["approve"], "chen@example.com", "approve")
    wait_for("the change", lambda: status_of(live_gateway, number) == "successful")
    assert main(["change", "show", number]) == 0
    shown = capsys.readouterr().out
    assert f"{number} v1 successful" in shown and "step_ok" in shown
