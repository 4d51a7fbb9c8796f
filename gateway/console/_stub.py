"""stub: what the console's pages share, until i14-incidents' foundation replaces it at merge
(its layout, its sign-in redirect and its message catalogue): the signed-in person or the
redirect to /signin, the person's language, and the texts of an area in that language.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from urllib.parse import quote

import yaml
from fastapi import Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from itilflow.gateway import browser
from itilflow.gateway.deps import gateway_of
from itilflow.models import Engineer
from itilflow.services.principals import Principal

MESSAGES_DIR = Path(__file__).parent / "messages"
LANGUAGES = ("en", "zh_CN")


def person_or_signin(request: Request) -> Principal | RedirectResponse:
    """The signed-in person, or the redirect to the sign-in page that comes back here."""
    person = browser.current_person(request)
    if person is not None:
        return person
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)


def language_of(request: Request, name: str | None) -> str:
    """The person's language from the directory, English when none is set."""
    if name is None:
        return "en"
    with Session(gateway_of(request).engine) as session:
        engineer = session.get(Engineer, name)
    language = engineer.language if engineer else None
    return language if language in LANGUAGES else "en"


@cache
def texts(area: str, language: str) -> dict[str, str]:
    """The texts of `area` in `language`, English for any the language lacks."""
    english = _load(MESSAGES_DIR / "en" / f"{area}.yaml")
    if language == "en":
        return english
    return english | _load(MESSAGES_DIR / language / f"{area}.yaml")


def _load(path: Path) -> dict[str, str]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    return {str(key): str(value) for key, value in (loaded or {}).items()}
