"""What every console page shares: who is signed in (or the sign-in page), the language, and
rendering in gateway/pages/layout.html.

A route asks `signed_in_with(request, *roles)`: a Principal, or the response to send instead (a
redirect to /signin?next=<this page> for a signed-out visitor, the 403 page for a person without
any of `roles`). It then answers `render(request, person, "x.html", **values)`, which gives the
template what layout.html needs (see the contract at the top of layout.html).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from itilflow.gateway import browser
from itilflow.gateway.console.catalogue import choose_language, translator
from itilflow.gateway.deps import gateway_of
from itilflow.gateway.html import render_page
from itilflow.models import Engineer
from itilflow.services.principals import Principal

STATIC_DIR = Path(__file__).parent.parent / "static"
# Only this site's stylesheet, script and forms; no inline script or style, no framing (a
# confirmation button cannot be clicked through another site's frame).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def mount_static(app: FastAPI) -> None:
    """The console's stylesheet and script under /static, served from the package (no CDN)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def language(request: Request, person: Principal | None) -> str:
    """The person's language from the directory, else the browser's."""
    person_language = None
    if person is not None and person.kind == "person":
        with Session(gateway_of(request).engine) as session:
            engineer = session.get(Engineer, person.name)
            person_language = engineer.language if engineer else None
    return choose_language(person_language, request.headers.get("accept-language"))


def render(
    request: Request,
    person: Principal | None,
    template: str,
    *,
    status_code: int = 200,
    lang: str | None = None,
    **values: Any,
) -> HTMLResponse:
    """`template` (which extends layout.html) for `person`, with layout.html's values. Inside
    an open database session pass `lang` (from `language()`, asked before): on SQLite a second
    session would wait for the first one's write lock."""
    lang = lang or language(request, person)
    csrf = browser.csrf_for(request)
    # The layout's own texts come through `ui`; `t` is the page's (the same lookup unless the
    # page gives its own, e.g. a mapping of its area's texts from catalogue.texts()).
    ui = translator(lang)
    values.setdefault("t", ui)
    response = render_page(
        template,
        status_code=status_code,
        person=person,
        lang=lang,
        ui=ui,
        csrf=csrf.field,
        here=request.url.path,
        **values,
    )
    csrf.set_on(response)
    # A console page shows records: nothing of it in a shared cache or another site's Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def signin_redirect(request: Request) -> RedirectResponse:
    """To the sign-in page, coming back to this page afterwards."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(here, safe='')}", status_code=303)


def forbidden(request: Request, person: Principal, lang: str | None = None) -> HTMLResponse:
    return render(request, person, "forbidden.html", status_code=403, lang=lang)


def signed_in_with(request: Request, *roles: str) -> Principal | Response:
    """The signed-in person holding any of `roles` (any person when none are named), or the
    response to send instead: the sign-in page's redirect, or 403."""
    person = browser.current_person(request)
    if person is None:
        return signin_redirect(request)
    if roles and not person.has(*roles):
        return forbidden(request, person)
    return person


def person_or_signin(request: Request) -> Principal | Response:
    """The signed-in person (any role), or the redirect to the sign-in page that comes back."""
    return signed_in_with(request)


def language_of(request: Request, name: str | None) -> str:
    """The language of the person named `name` (None: nobody signed in), else the browser's."""
    person = Principal(name=name, kind="person") if name else None
    return language(request, person)


def form_value(form: dict[str, list[str]], name: str, limit: int = 20_000) -> str:
    """One field of a posted form, stripped and cut at `limit` characters ("" when absent)."""
    return (form.get(name) or [""])[0].strip()[:limit]
