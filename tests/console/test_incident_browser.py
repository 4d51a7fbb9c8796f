"""The whole path of an engineer woken by a P1, in a phone-sized Chromium window: the P1 mail's
link (from the real SMTP capture) -> sign in with the mailed code -> the incident page with its
SLA clock -> acknowledge, comment, watch the timeline follow a change made elsewhere, resolve."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from sqlmodel import Session

from itilflow.models import Incident
from itilflow.notifications import asend_email, render_message
from itilflow.notifications.incident_context import incident_context
from tests.console.conftest import grant, incident
from tests.console.test_incident_pages import timeline
from tests.support.chromium import headless_chromium

LINK = re.compile(r"^Link:\s+(\S+)\r?$", re.MULTILINE)
CODE = re.compile(r"^Your code: (\d{8})\r?$", re.MULTILINE)


def mail_the_p1(rt: Any, number: str) -> None:
    """The incident_opened mail as the notify task renders it, through the real SMTP."""
    with Session(rt.engine) as session:
        row = session.get(Incident, int(number[4:]))
        context = {
            "incident": incident_context(
                session, row, policies=rt.policies, public_url=rt.settings.public_url
            ),
            "known_error": None,
        }
    message = render_message("incident_opened", "en", context)
    asyncio.run(asend_email(message, to=["chen@example.com"], settings=rt.mail))


def body_of(mail: Any) -> str:
    return mail.message.get_body(("plain",)).get_content()


def test_an_engineer_acts_on_a_p1_from_its_mail_in_a_phone(live_gateway, rt, smtp_server, tmp_path):
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    grant(rt, "chen", "agent")
    api = httpx.Client(
        base_url=live_gateway,
        headers={"Authorization": f"Bearer {rt.settings.api_token.get_secret_value()}"},
        trust_env=False,
    )
    opened = api.post("/api/incidents", json={"title": "Checkout <b>down</b>", "priority": "P1"})
    number = opened.json()["number"]
    mail_the_p1(rt, number)
    [p1_mail] = smtp_server.wait_for(1)
    link = LINK.search(body_of(p1_mail)).group(1)
    assert link == f"{live_gateway}/incidents/{number}"

    with headless_chromium(tmp_path) as driver:
        driver.set_window_size(375, 812)
        wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException,))
        driver.get(link)  # signed out: the sign-in page, coming back here afterwards
        wait.until(lambda d: d.find_element(By.ID, "name")).send_keys("chen")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "code"))
        code = CODE.search(body_of(smtp_server.wait_for(2)[1])).group(1)
        driver.find_element(By.ID, "code").send_keys(code)
        driver.find_element(By.ID, "confirm").click()

        sla = wait.until(lambda d: d.find_element(By.ID, "sla")).text
        assert "Response due" in sla and "left" in sla
        assert driver.title.startswith(f"{number} · Checkout <b>down</b>")  # text, not markup
        no_sideways_scroll = "return document.documentElement.scrollWidth <= window.innerWidth"
        assert driver.execute_script(no_sideways_scroll)
        driver.save_screenshot(str(tmp_path / "incident-375.png"))

        def do(action: str, note: str = "") -> None:
            details = driver.find_element(By.ID, f"action-{action}")
            if details.get_attribute("open") is None:
                details.find_element(By.TAG_NAME, "summary").click()
            if note:
                details.find_element(By.NAME, "note").send_keys(note)
            details.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            wait.until(lambda d: d.find_element(By.ID, "confirm")).click()
            wait.until(lambda d: d.find_element(By.ID, "live"))

        def status() -> str:
            return driver.find_element(By.CSS_SELECTOR, "#live .status").get_attribute(
                "data-status"
            )

        do("acknowledge")
        assert status() == "acknowledged"
        do("comment", "restarting the payment pods")
        assert "restarting the payment pods" in driver.find_element(By.ID, "timeline").text

        # A colleague comments through the API: the open page shows it without a reload.
        api.post(f"/api/incidents/{number}/comment", json={"note": "DB failover done"})
        wait.until(lambda d: "DB failover done" in d.find_element(By.ID, "timeline").text)

        do("resolve", "payment pods restarted, checkout works")
        assert status() == "resolved"
        driver.save_screenshot(str(tmp_path / "resolved-375.png"))
        # The queues fit the phone too, and lead back to the incident.
        driver.get(f"{live_gateway}/incidents?queue=all&status=resolved")
        wait.until(lambda d: d.find_element(By.ID, "incidents"))
        assert driver.execute_script(no_sideways_scroll)
        driver.find_element(By.LINK_TEXT, number).click()
        wait.until(lambda d: d.find_element(By.ID, "live"))
    api.close()
    assert incident(rt, number).status == "resolved"
    entries = [(kind, actor) for kind, actor, _, _ in timeline(rt, number)]
    assert entries[1:] == [
        ("acknowledged", "chen"),
        ("commented", "chen"),
        ("commented", "admin"),
        ("resolved", "chen"),
    ]
