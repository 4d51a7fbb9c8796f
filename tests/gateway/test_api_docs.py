"""/docs and /redoc work without the internet: every asset they load is the gateway's own.
The pages' HTML names no other host, and in Chromium, with every name but the gateway's
unresolvable, both pages render the API and load nothing from anywhere else."""

from __future__ import annotations

import re

import pytest

from tests.security.test_signin_browser import live_gateway  # noqa: F401 (a fixture)
from tests.support.chromium import headless_chromium

URLS = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)|url:\s*'([^']+)'""")


@pytest.fixture
def docs_client(rt):
    from fastapi.testclient import TestClient

    from itilflow.gateway.app import create_app

    with TestClient(create_app(rt.settings, rt.policies)) as client:
        yield client  # no token: the pages are public, as /openapi.json is


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_load_only_the_gateways_assets(docs_client, page):
    response = docs_client.get(page)
    assert response.status_code == 200
    html = response.text
    assert "://" not in html and '"//' not in html and "'//" not in html, "no other host"
    urls = [a or b for a, b in URLS.findall(html)]
    assert "/openapi.json" in urls
    assets = [url for url in urls if url != "/openapi.json"]
    assert len(assets) >= 2 and all(url.startswith("/docs/assets/") for url in assets), urls
    for url in assets:
        asset = docs_client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url


def test_only_the_listed_assets_are_served(docs_client):
    assert (
        docs_client.get("/docs/assets/swagger-ui.css")
        .headers["content-type"]
        .startswith("text/css")
    )
    for name in ("core.py", "..%2F__init__.py", "%2Fetc%2Fpasswd", "static"):
        assert docs_client.get(f"/docs/assets/{name}").status_code == 404, name
    assert docs_client.get("/openapi.json").json()["info"]["title"] == "itilflow gateway"


def test_both_pages_render_in_a_browser_with_no_other_host(live_gateway, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with headless_chromium(tmp_path, offline=True) as driver:
        driver.get(f"{live_gateway}/docs")
        WebDriverWait(driver, 30).until(
            lambda d: "itilflow gateway" in d.find_element(By.CSS_SELECTOR, ".swagger-ui").text
        )
        assert "/api/incidents" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui").text
        loaded = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        driver.get(f"{live_gateway}/redoc")
        WebDriverWait(driver, 30).until(
            lambda d: "itilflow gateway" in d.find_element(By.TAG_NAME, "h1").text
        )
        loaded += driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
    elsewhere = [url for url in loaded if not url.startswith(f"{live_gateway}/")]
    assert loaded and not elsewhere, elsewhere
