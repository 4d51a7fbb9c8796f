"""What the change, problem and knowledge pages share: how a moment is written, and the page
that only says something (not found, not yours to see)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi.responses import HTMLResponse

from itilflow.gateway.html import render_page


def when_in(zone: ZoneInfo) -> Callable[[datetime | None], str]:
    """A function the templates call: the moment in `zone`, "" for none."""

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else ""

    return when


def message_page(t: dict[str, str], title: str, message: str, status_code: int) -> HTMLResponse:
    """A console page that only says `message` under `title` (texts `t`)."""
    return render_page(
        "console_message.html", status_code=status_code, t=t, title=title, message=message
    )
