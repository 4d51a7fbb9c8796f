"""What the problem rules share: their errors and what an action may be given."""

from __future__ import annotations

from dataclasses import dataclass, field


class ProblemError(ValueError):
    """An action that the problem's state or the input does not allow; nothing was changed."""


class NotFound(LookupError):
    pass


@dataclass
class ActionInput:
    """What an action may be given; each action reads the fields it needs."""

    note: str = ""
    whys: list[dict[str, str]] = field(default_factory=list)
    root_cause: str = ""
    root_cause_category: str | None = None
    workaround: str = ""
    symptoms: str = ""
    keywords: list[str] = field(default_factory=list)
    change: str | None = None
    engineer: str | None = None
    group: str | None = None
