"""One whole path in a real browser (Debian's headless Chromium on the real gateway under uvicorn,
the real SMTP capture): open a change's approval mail link, read the plan (steps and their undo
visible, in a phone-sized window), approve, enter the code mailed to the approver."""

from __future__ import annotations

import re

from sqlmodel import Session

from itilflow.models import ChangeStatus, list_approval_requests, session_scope
from itilflow.notifications.change_context import approval_mail
from itilflow.services import changes
from tests.console.test_change_pages import store_change
from tests.security.test_signin_browser import live_gateway  # noqa: F401
from tests.support.approval_codes import wait_for_code
from tests.support.chromium import headless_chromium


def approval_mail_link(rt, change_id: int) -> str:
    """The approve link of the approval request mail to chen, as the mail carries it."""
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        request = changes.create_approval_request(
            session=session,
            change=change,
            stage="technical-lead",
            approver="chen",
            policies=rt.policies,
        )
        mail = approval_mail(
            change,
            request,
            address="chen@example.com",
            key="approval:1",
            actor="test",
            reminder=False,
            secret=rt.secret,
            policies=rt.policies,
            public_url=rt.settings.public_url,
        )
    return re.search(r"^Approve: (\S+)$", mail["message"]["text"], re.MULTILINE).group(1)


def test_an_approver_reads_the_plan_then_approves_with_the_mailed_code(
    live_gateway,  # noqa: F811
    rt,
    smtp_server,
    tmp_path,
):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    change_id = store_change(rt)
    link = approval_mail_link(rt, change_id)
    with headless_chromium(tmp_path) as driver:
        driver.set_window_size(390, 844)  # a phone
        waiting = WebDriverWait(
            driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
        )
        driver.get(link)
        steps = driver.find_elements(By.CSS_SELECTOR, "#plan-steps > li.step")
        assert [s.find_element(By.TAG_NAME, "strong").text for s in steps] == [
            "bump version",
            "tell the load balancer",
        ]
        first_undo = steps[0].find_element(By.CLASS_NAME, "undo")
        assert first_undo.is_displayed() and "cp app.bak app.conf" in first_undo.text
        assert "irreversible" in steps[1].find_element(By.CLASS_NAME, "undo").text
        backup = driver.find_element(By.ID, "plan-backup")
        assert backup.is_displayed() and "cp app.conf app.bak" in backup.text
        assert "https://shop.example.com/health" in driver.find_element(By.ID, "plan-verify").text
        assert "s3cr3t-value" not in driver.page_source
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        driver.save_screenshot(str(tmp_path / "approval-plan.png"))
        assert overflow <= 0, f"the page is {overflow}px wider than a phone's window"
        assert not smtp_server.mails  # reading the plan asked for no code

        driver.find_element(By.ID, "approve").click()
        waiting.until(lambda d: d.find_element(By.ID, "code"))
        assert "c***@example.com" in driver.find_element(By.ID, "message").text
        assert "cp app.bak app.conf" in driver.find_element(By.ID, "plan").text  # still shown
        driver.find_element(By.ID, "code").send_keys(wait_for_code(smtp_server, "chen@example.com"))
        driver.find_element(By.ID, "confirm").click()
        message = waiting.until(
            lambda d: not d.find_elements(By.ID, "code") and d.find_element(By.ID, "message").text
        )
        driver.save_screenshot(str(tmp_path / "approval-done.png"))
    assert "recorded" in message
    with Session(rt.engine) as session:
        [request] = list_approval_requests(session=session, change_id=change_id)
        assert (request.approver, request.decision, request.decided_via) == (
            "chen",
            "approve",
            "link",
        )
        assert changes.load_change(session, change_id).status == ChangeStatus.awaiting_approval
