"""One sign-in in a real browser: headless Chromium on the real gateway (uvicorn) and the real
SMTP capture. Open the sign-in page, ask for a code, read it from the mail, enter it, land
signed in; the session cookie as the browser stores it; sign out."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from itilflow.gateway.app import create_app
from tests.support.chromium import headless_chromium
from tests.support.smtp import free_port


@pytest.fixture
def live_gateway(rt) -> Iterator[str]:
    port = free_port()
    rt.settings.public_url = f"http://127.0.0.1:{port}"
    app = create_app(rt.settings, rt.policies)
    server = uvicorn.Server(
        uvicorn.Config(app=app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{rt.settings.public_url}/health", trust_env=False).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield rt.settings.public_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_person_signs_in_with_the_mailed_code_in_a_browser(live_gateway, smtp_server, tmp_path):
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with headless_chromium(tmp_path) as driver:
        waiting = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException,))
        driver.get(f"{live_gateway}/signin")
        driver.find_element(By.ID, "name").send_keys("chen")
        driver.find_element(By.ID, "send").click()
        waiting.until(lambda d: d.find_element(By.ID, "code"))
        driver.save_screenshot(str(tmp_path / "signin-code.png"))
        [mail] = smtp_server.wait_for(1)
        body = mail.message.get_body(("plain",)).get_content()
        code = re.search(r"^Your code: (\d+)\r?$", body, re.MULTILINE).group(1)
        driver.find_element(By.ID, "code").send_keys(code)
        driver.find_element(By.ID, "confirm").click()
        shown = waiting.until(lambda d: d.find_element(By.ID, "signed-in").text)
        assert shown == "Signed in as chen."
        driver.save_screenshot(str(tmp_path / "signed-in.png"))
        cookie = driver.get_cookie("itilflow_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
        assert driver.execute_script("return document.cookie") == ""  # scripts see no cookie
        driver.find_element(By.ID, "signout").click()
        waiting.until(lambda d: d.find_element(By.ID, "name"))
        assert "You are signed out." in driver.find_element(By.ID, "message").text
        assert driver.get_cookie("itilflow_session") is None
