"""Sign-in through OpenID Connect, against a real provider running in the test
(tests/support/oidc_provider.py: discovery, authorize, token, JWKS; RS256 ID tokens) and the
real gateway app. Each refusal leaves no session and says why in the log."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, func, select

from itilflow.gateway import oidc
from itilflow.gateway.app import create_app
from itilflow.models import BrowserSession
from tests.support.csrf import session_cookie
from tests.support.oidc_provider import OidcProvider


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(client_id="itilflow", client_secret=secrets.token_urlsafe(32)) as running:
        yield running


@pytest.fixture
def browser(rt, provider) -> Iterator[TestClient]:
    settings = rt.settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": SecretStr(provider.client_secret),
        }
    )
    oidc._discovered.clear()
    with TestClient(create_app(settings, rt.policies)) as client:
        yield client


def sessions(rt) -> list[BrowserSession]:
    with Session(rt.engine) as session:
        return list(session.exec(select(BrowserSession)))


def to_provider(browser: TestClient, next_path: str = "/signin") -> str:
    """Press "sign in with your organisation's account": the provider's authorize URL."""
    started = browser.get(f"/signin/oidc?next={next_path}", follow_redirects=False)
    assert started.status_code == 303, started.text
    return started.headers["location"]


def back_from_provider(authorize_url: str) -> str:
    """What the provider answers the browser: the callback path with code and state."""
    answer = httpx.get(authorize_url, follow_redirects=False, trust_env=False)
    assert answer.status_code == 302
    callback = urlsplit(answer.headers["location"])
    assert callback.path == "/signin/oidc/callback"
    return f"{callback.path}?{callback.query}"


def test_the_provider_signs_a_person_of_the_directory_in(browser, rt, provider):
    authorize = to_provider(browser, "/approvals/x")
    query = parse_qs(urlsplit(authorize).query)
    assert query["redirect_uri"] == ["http://testserver/signin/oidc/callback"]
    assert query["state"][0] and query["nonce"][0] and query["scope"] == ["openid profile email"]
    signed = browser.get(back_from_provider(authorize), follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/approvals/x"
    assert session_cookie(browser)
    assert "Signed in as <strong>chen</strong>" in browser.get("/signin").text
    [row] = sessions(rt)
    assert (row.person, row.via) == ("chen", "oidc")


def refused(browser, rt, path: str, caplog, why: str) -> None:
    before = len(sessions(rt))
    with caplog.at_level(logging.WARNING, logger="itilflow.gateway.signin"):
        answer = browser.get(path, follow_redirects=False)
    assert answer.status_code in (400, 403), answer.text
    assert "OIDC sign-in from" in caplog.text and why in caplog.text, caplog.text
    assert len(sessions(rt)) == before
    assert "Signed in as" not in browser.get("/signin").text


def test_a_callback_with_another_state_is_refused(browser, rt, provider, caplog):
    callback = back_from_provider(to_provider(browser))
    forged = callback.replace("state=", "state=x")
    refused(browser, rt, forged, caplog, "the state does not match")


def test_a_callback_in_a_browser_that_started_nothing_is_refused(browser, rt, provider, caplog):
    """Login CSRF: an attacker's own code and state, slipped into the victim's browser."""
    with TestClient(browser.app) as attacker:
        callback = back_from_provider(to_provider(attacker))
    refused(browser, rt, callback, caplog, "no sign-in was started in this browser")


def test_a_replayed_code_is_refused(browser, rt, provider, caplog):
    authorize = to_provider(browser)
    callback = back_from_provider(authorize)
    assert browser.get(callback, follow_redirects=False).status_code == 303
    with TestClient(browser.app) as other:
        to_provider(other)  # a state cookie of its own, but the old code and state
        refused(other, rt, callback, caplog, "the state does not match")
    # The state cookie is used once: the same callback again in the first browser is refused.
    browser.cookies.clear()
    assert browser.get(callback).status_code == 403
    assert len(sessions(rt)) == 1


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        ("nonce", "the ID token is not valid"),
        ("audience", "the ID token is not valid"),
        ("issuer", "the ID token is not valid"),
        ("expired", "the ID token is not valid"),
        ("foreign-key", "the ID token is not valid"),
        ("no-claim", "has no 'preferred_username' claim"),
    ],
)
def test_a_wrong_id_token_is_refused(browser, rt, provider, caplog, tamper, why):
    provider.tamper = tamper
    refused(browser, rt, back_from_provider(to_provider(browser)), caplog, why)


def test_a_user_the_directory_does_not_know_is_refused(browser, rt, provider, caplog):
    provider.user = "mallory"
    callback = back_from_provider(to_provider(browser))
    refused(browser, rt, callback, caplog, "'mallory' is not an active person of the directory")


def test_a_wrong_client_secret_signs_nobody_in(rt, provider, caplog):
    settings = rt.settings.model_copy(
        update={
            "oidc_issuer": provider.issuer,
            "oidc_client_id": provider.client_id,
            "oidc_client_secret": SecretStr("not-the-secret"),
        }
    )
    with TestClient(create_app(settings, rt.policies)) as browser:
        callback = back_from_provider(to_provider(browser))
        refused(browser, rt, callback, caplog, "refused the code (401)")


def test_without_a_provider_there_is_no_oidc_sign_in(rt):
    with TestClient(create_app(rt.settings, rt.policies)) as browser:
        assert browser.get("/signin/oidc", follow_redirects=False).status_code == 404
        assert browser.get("/signin/oidc/callback?code=x&state=y").status_code == 404
        assert 'id="oidc"' not in browser.get("/signin").text
    with Session(rt.engine) as session:
        assert session.exec(select(func.count()).select_from(BrowserSession)).one() == 0
