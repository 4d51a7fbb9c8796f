"""Sign-in pages for people in a browser: a one-time code and link mailed to the address on
record, OIDC when an identity provider is configured (gateway/oidc.py), and sign-out.

A GET never signs anyone in or uses anything up: mail scanners fetch links, so the mailed link
shows a button, and only its POST signs in. Every POST carries the CSRF field
(gateway/browser.py), read by a dependency (browser.PageForm) so that the routes are plain
`def`s: they wait on the database in FastAPI's thread pool, never on the event loop. The form
answers the same page whether or not the name is a person of the directory; the code and link go
only to the address the directory holds.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session
from starlette.background import BackgroundTask

from itilflow.gateway import browser
from itilflow.gateway.deps import Gateway, gateway_of
from itilflow.gateway.html import render_page, render_text
from itilflow.notifications import NotificationError, RenderedMessage, asend_email
from itilflow.services import signin

log = logging.getLogger("itilflow.gateway.signin")

router = APIRouter(tags=["sign-in"])

SENT = (
    "If {name} is a person of the directory, a mail with a sign-in code and link is on its way "
    "to the address on record. Enter the code below, or open the link, within {minutes} minutes."
)


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    value = (value or "").strip()
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value[:500]
    return "/signin"


def page(request: Request, title: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    csrf = browser.csrf_for(request)
    gateway = gateway_of(request)
    shown = {"message": "", "person": None, "name_form": False, "ticket": None, "link_form": None}
    shown |= {"next": "/signin", "oidc": bool(gateway.settings.oidc_issuer)}
    response = render_page(
        "signin.html", status_code=status_code, title=title, csrf=csrf.field, **(shown | values)
    )
    csrf.set_on(response)
    # Nothing of these pages in a shared cache, and no sign-in link in a Referer header.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def refused_csrf(request: Request, where: str) -> HTMLResponse:
    browser.log_csrf_refusal(request, where)
    return page(
        request,
        "The form has expired",
        message="The form was not sent from this site's page: reload the page and try again.",
        status_code=403,
    )


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    person = browser.current_person(request)
    if person is not None:
        return page(request, "Signed in", person=person.name)
    return page(request, "Sign in", name_form=True, next=safe_next(next))


@router.post("/signin", response_class=HTMLResponse)
def ask_for_signin(request: Request, form: browser.PageForm) -> HTMLResponse:
    if not browser.csrf_ok(request, form):
        return refused_csrf(request, "sign-in")
    gateway = gateway_of(request)
    name = (form.get("name") or [""])[0].strip()[:254]
    next_path = safe_next((form.get("next") or [""])[0])
    client = browser.client_address(request)
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            started = signin.start_signin(
                session=session, name_or_email=name, client=client, secret=gateway.secret
            )
        except signin.TooManySignins as exc:
            log.warning("sign-in requests from %s refused: %s", client, exc)
            return page(request, "Please wait", message=f"{exc}.", status_code=429)
        session.commit()
    minutes = int(signin.SIGNIN_VALID_FOR.total_seconds() // 60)
    response = page(
        request,
        "Check your mail",
        message=SENT.format(name=name or "the name", minutes=minutes),
        ticket=started.ticket,
        next=next_path,
    )
    if started.mail is not None:
        # After the answer: neither its timing nor a failed mail may tell that the name exists.
        response.background = BackgroundTask(_mail_or_withdraw, gateway, started, next_path)
    return response


async def _mail_or_withdraw(gateway: Gateway, started: signin.Started, next_path: str) -> None:
    assert started.mail is not None
    if await _mail(gateway, started.mail, next_path):
        return
    await anyio.to_thread.run_sync(_withdraw, gateway, started)


def _withdraw(gateway: Gateway, started: signin.Started) -> None:
    with Session(gateway.engine) as session:  # the code and link that did not go are void
        signin.withdraw_signin(session=session, ticket=started.ticket, secret=gateway.secret)
        session.commit()


async def _mail(gateway: Gateway, mail: signin.SigninMail, next_path: str = "/signin") -> bool:
    """Mail the code and link through the approval codes' mail settings; False when it failed.
    The link carries where to go afterwards (the console page the person came from)."""
    link = f"{gateway.settings.public_url}/signin/link/{mail.link_token}"
    if next_path != "/signin":
        link += f"?next={quote(next_path, safe='/')}"
    minutes = int(signin.SIGNIN_VALID_FOR.total_seconds() // 60)
    values = {"name": mail.name, "person": mail.person, "code": mail.code, "link": link}
    text = (
        f"Hello {mail.name},\n\nsomeone asked to sign in to itilflow as {mail.person}.\n\n"
        f"Your code: {mail.code}\n\nOr open this link and press the button:\n{link}\n\n"
        f"Either one works once, within {minutes} minutes. If it was not you, ignore this "
        "mail: nobody is signed in without it.\n"
    )
    message = RenderedMessage(
        subject=f"Your itilflow sign-in code: {mail.code}",
        html=render_text("signin_mail.html", valid_minutes=minutes, **values),
        text=text,
        chat_title="",
        chat_body="",
    )
    try:
        await asend_email(message, to=[mail.address], settings=gateway.code_mail)
    except (NotificationError, ValueError) as exc:
        log.warning("sign-in mail for %s failed: %s", mail.person, exc)
        return False
    log.info("sign-in code and link mailed to %s", mail.person)
    return True


def signed_in(request: Request, person: str, via: str, next_path: str) -> Response:
    """Start a session for `person` and send the browser on."""
    gateway = gateway_of(request)
    with Session(gateway.engine, expire_on_commit=False) as session:
        earlier = browser.current_session(request, session)
        if earlier is not None:  # one session per browser: the one it had ends
            assert earlier.id is not None
            signin.revoke_session(session=session, session_id=earlier.id, revoked_by=person)
        value, _ = signin.start_session(
            session=session,
            person=person,
            via=via,
            client=browser.client_address(request),
            limits=browser.session_limits(gateway),
        )
        session.commit()
    log.info("%s signed in (%s) from %s", person, via, browser.client_address(request))
    response = RedirectResponse(next_path, status_code=303)
    browser.set_session_cookie(request, response, value)
    return response


@router.post("/signin/code", response_class=HTMLResponse)
def signin_by_code(request: Request, form: browser.PageForm) -> Response:
    if not browser.csrf_ok(request, form):
        return refused_csrf(request, "sign-in code")
    gateway = gateway_of(request)
    ticket = (form.get("ticket") or [""])[0]
    next_path = safe_next((form.get("next") or [""])[0])
    with Session(gateway.engine, expire_on_commit=False) as session:
        try:
            person = signin.redeem_code(
                session=session,
                ticket=ticket,
                code=(form.get("code") or [""])[0],
                secret=gateway.secret,
            )
        except signin.SigninRefused as exc:
            session.commit()  # a wrong attempt counts
            log.warning("sign-in code refused from %s: %s", browser.client_address(request), exc)
            again = "wrong code" in str(exc) and "void" not in str(exc)
            return page(
                request,
                "Not signed in",
                message=f"{str(exc).capitalize()}.",
                ticket=ticket if again else None,
                name_form=not again,
                next=next_path,
                status_code=403,
            )
        session.commit()
    return signed_in(request, person, "code", next_path)


@router.get("/signin/link/{token}", response_class=HTMLResponse)
def confirm_link(token: str, request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        try:
            person = signin.check_link(session=session, link_token=token, secret=gateway.secret)
        except signin.SigninRefused as exc:
            return page(
                request,
                "This link cannot be used",
                message=f"{str(exc).capitalize()}.",
                name_form=True,
                status_code=400,
            )
    return page(request, "Sign in?", link_form=person, next=safe_next(next))


@router.post("/signin/link/{token}", response_class=HTMLResponse)
def signin_by_link(token: str, request: Request, form: browser.PageForm) -> Response:
    if not browser.csrf_ok(request, form):
        return refused_csrf(request, "sign-in link")
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        try:
            person = signin.redeem_link(session=session, link_token=token, secret=gateway.secret)
        except signin.SigninRefused as exc:
            log.warning("sign-in link refused from %s: %s", browser.client_address(request), exc)
            return page(
                request,
                "Not signed in",
                message=f"{str(exc).capitalize()}.",
                name_form=True,
                status_code=403,
            )
        session.commit()
    return signed_in(request, person, "link", safe_next((form.get("next") or [""])[0]))


@router.post("/signout", response_class=HTMLResponse)
def sign_out(request: Request, form: browser.PageForm) -> HTMLResponse:
    if not browser.csrf_ok(request, form):
        return refused_csrf(request, "sign-out")
    gateway = gateway_of(request)
    with Session(gateway.engine) as session:
        row = browser.current_session(request, session)
        if row is not None:
            assert row.id is not None
            signin.revoke_session(session=session, session_id=row.id, revoked_by=row.person)
            log.info("%s signed out", row.person)
        session.commit()
    response = page(request, "Signed out", message="You are signed out.", name_form=True)
    browser.clear_session_cookie(request, response)
    return response
