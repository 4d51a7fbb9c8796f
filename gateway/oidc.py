"""Sign-in through an OpenID Connect identity provider (the authorization code flow), when
ITILFLOW_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET are set.

`/signin/oidc` sends the browser to the provider with a random `state` and `nonce`, kept in a
short-lived cookie signed with the secret key; `/signin/oidc/callback` takes the browser back
only with that cookie and the same state (so nobody can slip their own sign-in into another
person's browser), trades the code for an ID token at the provider's token endpoint, and checks
the token with authlib's OIDC rules (issuer, audience, expiry, nonce) against the provider's
published keys. The username is the configured claim (`ITILFLOW_OIDC_USERNAME_CLAIM`), and it
must be an active person of the directory: the provider proves who someone is, the directory
says who may act.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from datetime import timedelta
from typing import Any

import anyio.to_thread
import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oidc.core import CodeIDToken
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel import Session

from itilflow import signing
from itilflow.gateway import browser
from itilflow.gateway.deps import Gateway, gateway_of
from itilflow.gateway.signin import page, safe_next, signed_in
from itilflow.services import principals
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.signin")

router = APIRouter(tags=["sign-in"])

STATE_COOKIE = "itilflow_oidc"
STATE_PURPOSE = "oidc-state"
STATE_VALID_FOR = timedelta(minutes=10)
CALLBACK = "/signin/oidc/callback"
# The provider's discovery document and keys, kept this long (a key rotation is picked up).
DISCOVERY_TTL = 3600.0
HTTP_TIMEOUT = 10.0
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
LEEWAY_SECONDS = 60

_discovered: dict[str, tuple[float, dict[str, Any], KeySet]] = {}


class OidcRefused(Exception):
    """The provider's answer does not sign anyone in; the message says why (for the log)."""


def configured(gateway: Gateway) -> bool:
    settings = gateway.settings
    return bool(settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret)


async def provider(gateway: Gateway, *, fresh: bool = False) -> tuple[dict[str, Any], KeySet]:
    """The provider's discovery document and its signing keys (cached DISCOVERY_TTL)."""
    issuer = (gateway.settings.oidc_issuer or "").rstrip("/")
    cached = _discovered.get(issuer)
    if cached and not fresh and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1], cached[2]
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        found = await client.get(f"{issuer}/.well-known/openid-configuration")
        found.raise_for_status()
        document = found.json()
        if document.get("issuer", "").rstrip("/") != issuer:
            raise OidcRefused(f"the discovery document names issuer {document.get('issuer')!r}")
        keys = await client.get(document["jwks_uri"])
        keys.raise_for_status()
    key_set = KeySet.import_key_set(keys.json())
    _discovered[issuer] = (time.monotonic(), document, key_set)
    return document, key_set


def unavailable(request: Request, message: str, status_code: int) -> HTMLResponse:
    return page(request, "Not signed in", message=message, name_form=True, status_code=status_code)


@router.get("/signin/oidc", response_class=HTMLResponse)
async def start_oidc(request: Request, next: str | None = None) -> Response:  # noqa: A002
    gateway = gateway_of(request)
    if not configured(gateway):
        return unavailable(request, "Sign-in with an identity provider is not set up.", 404)
    try:
        document, _ = await provider(gateway)
    except (httpx.HTTPError, ValueError, KeyError, JoseError, OidcRefused) as exc:
        log.warning("OIDC discovery at %s failed: %s", gateway.settings.oidc_issuer, exc)
        return unavailable(request, "The identity provider cannot be reached right now.", 503)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    kept = signing.sign(
        {"state": state, "nonce": nonce, "next": safe_next(next)},
        secret=gateway.secret,
        purpose=STATE_PURPOSE,
        valid_for=STATE_VALID_FOR,
    )
    url = add_params_to_uri(
        document["authorization_endpoint"],
        [
            ("response_type", "code"),
            ("client_id", gateway.settings.oidc_client_id or ""),
            ("redirect_uri", f"{gateway.settings.public_url}{CALLBACK}"),
            ("scope", "openid profile email"),
            ("state", state),
            ("nonce", nonce),
        ],
    )
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        STATE_COOKIE,
        kept,
        max_age=int(STATE_VALID_FOR.total_seconds()),
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back, not on cross-site POSTs
        secure=browser.secure_cookies(gateway, request),
        path=CALLBACK,
    )
    return response


@router.get(CALLBACK, response_class=HTMLResponse)
async def finish_oidc(request: Request) -> Response:
    gateway = gateway_of(request)
    if not configured(gateway):
        return unavailable(request, "Sign-in with an identity provider is not set up.", 404)
    try:
        person, next_path = await _person_from_callback(gateway, request)
    except OidcRefused as exc:
        log.warning("OIDC sign-in from %s refused: %s", browser.client_address(request), exc)
        response = unavailable(request, f"The sign-in was refused: {exc}.", 403)
    else:
        # The session is stored off the event loop (the database may wait on a lock).
        response = await anyio.to_thread.run_sync(signed_in, request, person, "oidc", next_path)
    response.delete_cookie(STATE_COOKIE, path=CALLBACK)  # a state is used once, either way
    return response


async def _person_from_callback(gateway: Gateway, request: Request) -> tuple[str, str]:
    """The directory's person the provider's answer signs in, and where to go next."""
    params = request.query_params
    try:
        kept = signing.verify(
            request.cookies.get(STATE_COOKIE, ""), secret=gateway.secret, purpose=STATE_PURPOSE
        )
    except signing.BadToken as exc:
        raise OidcRefused(f"no sign-in was started in this browser ({exc})") from None
    if not hmac.compare_digest(str(kept.get("state")), params.get("state", "")):
        raise OidcRefused("the state does not match the sign-in this browser started")
    if params.get("error"):
        raise OidcRefused(f"the identity provider answered {params['error'][:100]!r}")
    claims = await _id_token_claims(gateway, params.get("code", ""), str(kept.get("nonce")))
    claim = gateway.settings.oidc_username_claim
    username = claims.get(claim)
    if not isinstance(username, str) or not username:
        raise OidcRefused(f"the ID token has no {claim!r} claim")
    found = await anyio.to_thread.run_sync(_active_person, gateway, username)
    if found is None:
        raise OidcRefused(f"{username!r} is not an active person of the directory")
    return found.name, safe_next(kept.get("next"))


def _active_person(gateway: Gateway, username: str) -> Principal | None:
    with Session(gateway.engine) as session:
        return principals.principal_named(session=session, name=username, kind="person")


async def _id_token_claims(gateway: Gateway, code: str, nonce: str) -> dict[str, Any]:
    """Trade the code for an ID token and check it: signature, issuer, audience, expiry, nonce."""
    settings = gateway.settings
    assert settings.oidc_client_id and settings.oidc_client_secret
    try:
        document, key_set = await provider(gateway)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            answer = await client.post(
                document["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": f"{settings.public_url}{CALLBACK}",
                },
                auth=(settings.oidc_client_id, settings.oidc_client_secret.get_secret_value()),
            )
    except (httpx.HTTPError, ValueError, KeyError, JoseError) as exc:
        raise OidcRefused(f"the identity provider cannot be reached ({exc})") from None
    if answer.status_code != 200:
        raise OidcRefused(f"the identity provider refused the code ({answer.status_code})")
    id_token = answer.json().get("id_token")
    if not isinstance(id_token, str):
        raise OidcRefused("the identity provider sent no ID token")
    try:
        token = jwt.decode(id_token, key_set, algorithms=ALGORITHMS)
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={
                "iss": {"essential": True, "value": document["issuer"]},
                "aud": {"essential": True, "value": settings.oidc_client_id},
            },
            params={"nonce": nonce, "client_id": settings.oidc_client_id},
        )
        claims.validate(leeway=LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        raise OidcRefused(f"the ID token is not valid ({exc})") from None
    return dict(claims)
