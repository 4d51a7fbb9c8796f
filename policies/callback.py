"""The survey callback in levels (routing.yaml `survey.callback`).

An unsatisfied survey answer starts level 1: its person (the engineer who handled the incident,
the group's lead or manager, or a named expert) calls the reporter back within the level's
deadline and records the outcome. "Satisfied" ends the callback; "not satisfied", "unreachable"
or a deadline that lapses with nothing recorded starts the next level; after the last level the
callback stays recorded as unresolved. The service plans' three levels: the engineer apologises
and explains, a supervisor agrees improvements, an expert offers extra service.

Pure decisions only: who a level names and when it is due; services/callbacks.py does the rest.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, model_validator

from itilflow.policies._base import Name, PolicyModel, raise_if
from itilflow.policies.calendars import Calendar
from itilflow.policies.durations import Duration

WHO: tuple[str, ...] = ("engineer", "group_lead", "manager", "expert")
Who = Literal["engineer", "group_lead", "manager", "expert"]
OUTCOMES: tuple[str, ...] = ("satisfied", "not_satisfied", "unreachable")
Outcome = Literal["satisfied", "not_satisfied", "unreachable"]
# What a level's end leads to.
Next = Literal["resolved", "next_level", "unresolved"]


class CallbackLevel(PolicyModel):
    # engineer: the incident's assignee; group_lead / manager: of the incident's group;
    # expert: `person`, or the lead of `group`.
    who: Who
    # Business time on the callback's calendar: "8h" on an 8-hour working day is one day.
    within: Duration
    person: Name | None = None
    group: Name | None = None

    @model_validator(mode="after")
    def _check(self) -> CallbackLevel:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.within <= timedelta():
            problems.append((("within",), "expected a positive duration like '8h' or '2d'"))
        named = [key for key in ("person", "group") if getattr(self, key)]
        if self.who == "expert" and len(named) != 1:
            problems.append((("who",), "an expert level names exactly one of 'person' or 'group'"))
        if self.who != "expert":
            problems += [((key,), f"only an expert level names a {key}") for key in named]
        raise_if(problems)
        return self


class CallbackPolicy(PolicyModel):
    # A calendar of sla.yaml: the levels' deadlines count its open time.
    calendar: Name
    levels: list[CallbackLevel] = Field(min_length=1, max_length=9)


def level_due(policy: CallbackPolicy, calendar: Calendar, level: int, start: datetime) -> datetime:
    """When level `level` (1-based), started at `start`, must have its outcome recorded."""
    return calendar.add_business_time(start, policy.levels[level - 1].within)


def after_level(policy: CallbackPolicy, level: int, outcome: str | None) -> Next:
    """What follows level `level` ending with `outcome` (None: its deadline lapsed)."""
    if outcome == "satisfied":
        return "resolved"
    return "next_level" if level < len(policy.levels) else "unresolved"
