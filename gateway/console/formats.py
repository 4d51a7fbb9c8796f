"""How the console's pages write a moment: in the process's zone of the policies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo


def when_in(zone: ZoneInfo) -> Callable[[datetime | None], str]:
    """A function the templates call: the moment in `zone`, "" for none."""

    def when(value: datetime | None) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if value else ""

    return when
