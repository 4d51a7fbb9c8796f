"""What the change, problem and knowledge pages share: how a moment is written, and the page
that only says something (not found, not yours to see)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse

from itilflow.gateway.console.base import render
from itilflow.services.principals import Principal


def when_in(zone: ZoneInfo) -> Callable[[datetime | None], str]:
    """A function the templates call: the moment in `zone`, "" for none."""

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else ""

    return when


def message_page(
    page: tuple[Request, Principal, str],
    t: dict[str, str],
    title: str,
    message: str,
    status_code: int,
) -> HTMLResponse:
    """A console page (for the request, the person and their language: `page`) that only says
    `message` under `title` (texts `t`)."""
    request, person, lang = page
    return render(
        request,
        person,
        "console_message.html",
        status_code=status_code,
        lang=lang,
        t=t,
        title=title,
        message=message,
    )
