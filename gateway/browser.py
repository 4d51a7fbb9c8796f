"""What the pages links open need from the browser: the session cookie, the signed-in person,
and the CSRF token every form carries.

CSRF: a signed double-submit token. Each browser gets a random `itilflow_csrf` cookie (HttpOnly,
SameSite=Lax) the first time a page with a form is shown; every form carries
HMAC(secret key, cookie) in a hidden `csrf` field, and every POST must bring both, matching. A
page on another site can make the browser send the cookie, but cannot read it nor the page, so
it cannot know the field's value.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlmodel import Session

from itilflow.gateway.deps import Gateway, gateway_of
from itilflow.models import BrowserSession
from itilflow.services import principals, signin
from itilflow.services.principals import Principal

log = logging.getLogger("itilflow.gateway.signin")

SESSION_COOKIE = "itilflow_session"
CSRF_COOKIE = "itilflow_csrf"
CSRF_FIELD = "csrf"


def session_limits(gateway: Gateway) -> signin.SessionLimits:
    settings = gateway.settings
    return signin.SessionLimits(
        idle=timedelta(minutes=settings.session_idle_minutes),
        lifetime=timedelta(hours=settings.session_max_hours),
    )


def secure_cookies(gateway: Gateway, request: Request | None = None) -> bool:
    """Cookies are Secure when the public URL is https, or the request came over TLS (uvicorn
    takes the scheme from a trusted proxy's X-Forwarded-Proto)."""
    if (gateway.settings.public_url or "").lower().startswith("https://"):
        return True
    return request is not None and request.url.scheme == "https"


def client_address(request: Request) -> str:
    """The client's address (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else "unknown"


# -------------------------------------------------------------------------------------- CSRF


async def read_form(request: Request) -> dict[str, list[str]]:
    """A page's urlencoded form, read on the event loop as a dependency: the page's route is then
    a plain `def` that FastAPI runs in its thread pool, where it may wait on the database."""
    return parse_qs((await request.body()).decode("utf-8", "replace"))


PageForm = Annotated[dict[str, list[str]], Depends(read_form)]


@dataclass(frozen=True)
class Csrf:
    """The browser's CSRF cookie (new when it had none) and the value its forms carry."""

    cookie: str
    new: bool
    field: str
    secure: bool

    def set_on(self, response: Response) -> Response:
        if self.new:
            response.set_cookie(
                CSRF_COOKIE,
                self.cookie,
                httponly=True,
                samesite="lax",
                secure=self.secure,
                path="/",
            )
        return response


def _csrf_mac(secret: str, cookie: str) -> str:
    return hmac.new(secret.encode(), f"csrf:{cookie}".encode(), hashlib.sha256).hexdigest()


def csrf_for(request: Request) -> Csrf:
    """The CSRF values for the forms of the page about to be shown."""
    gateway = gateway_of(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    new = not (16 <= len(cookie) <= 128)
    if new:
        cookie = secrets.token_urlsafe(32)
    return Csrf(
        cookie=cookie,
        new=new,
        field=_csrf_mac(gateway.secret, cookie),
        secure=secure_cookies(gateway, request),
    )


def csrf_ok(request: Request, form: dict[str, list[str]]) -> bool:
    """True when the POST carries the CSRF cookie and the field that matches it."""
    gateway = gateway_of(request)
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = (form.get(CSRF_FIELD) or [""])[0]
    if not cookie or not given:
        return False
    return hmac.compare_digest(given.encode(), _csrf_mac(gateway.secret, cookie).encode())


def log_csrf_refusal(request: Request, page: str) -> None:
    log.warning(
        "%s: POST from %s refused: missing or wrong CSRF token", page, client_address(request)
    )


# ---------------------------------------------------------------------------------- sessions


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    gateway = gateway_of(request)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=gateway.settings.session_max_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(gateway, request),
        path="/",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    secure = secure_cookies(gateway_of(request), request)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure, path="/")


def current_session(request: Request, session: Session) -> BrowserSession | None:
    gateway = gateway_of(request)
    return signin.live_session(
        session=session,
        cookie=request.cookies.get(SESSION_COOKIE, ""),
        limits=session_limits(gateway),
    )


def current_person(request: Request) -> Principal | None:
    """The person signed in in this browser, None when nobody is (no cookie, or a session that
    is unknown, revoked, expired, or whose person left the directory). For the pages."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    gateway = gateway_of(request)
    with Session(gateway.engine, expire_on_commit=False) as session:
        row = current_session(request, session)
        person = None
        if row is not None:
            person = principals.principal_named(session=session, name=row.person, kind="person")
        session.commit()  # the session's last use
    if person is not None:
        request.state.principal = person.name  # the access log's (gateway/access.py)
    return person


CurrentPerson = Annotated[Principal | None, Depends(current_person)]
"""For a page's route: the signed-in person, or None."""
