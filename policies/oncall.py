"""On-call schedules (oncall.yaml): per group, layers of rotations and overrides.

A layer is a rotation: the people in order, handing over every day or every week at a local
time in a time zone, from a start date. A later layer covers the hours it names over the layers
before it (nights, weekends); a layer without hours covers all of them. An override puts a person
on call for a window: for the whole group (a swap), or only where another person would be (leave).

The schema checks a file on its own; the people and groups it names are checked against the
directory where the directory is known (`directory_problems`, run by `itilflow oncall check` and
by the resolution, which skips an unknown person). Who is on call when is worked out in
`itilflow.services.oncall`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, model_validator

from itilflow.policies._base import Name, PolicyModel, TimeZoneName, format_path, raise_if
from itilflow.policies.calendars import TimeRange, Weekday

FILENAME = "oncall.yaml"
Every = Literal["day", "week"]
PERIOD_DAYS: dict[str, int] = {"day": 1, "week": 7}
MIN_YEAR, MAX_YEAR = 1971, 2199
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def _handoff(value: Any) -> Any:
    """ "09:00" -> time(9, 0); YAML may hand over a time as text only (the loader keeps it)."""
    if isinstance(value, time):
        return value
    match = _CLOCK.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"expected a local time like '09:00' (00:00 to 23:59), got {value!r}")
    return time(int(match[1]), int(match[2]))


Handoff = Annotated[
    time,
    BeforeValidator(_handoff),
    PlainSerializer(lambda value: f"{value:%H:%M}", return_type=str, when_used="json"),
]


class Layer(PolicyModel):
    """One rotation: `people` take turns, each for a day or a week from `start` at `handoff`."""

    name: Name
    every: Every
    handoff: Handoff = time(9, 0)
    # The layer's own zone; None: the group's.
    timezone: TimeZoneName | None = None
    # The first shift starts on this day at `handoff`; a weekly one hands off on its weekday.
    start: date
    people: list[Name] = Field(min_length=1)
    # The hours the layer covers, local; none: all hours.
    hours: dict[Weekday, list[TimeRange]] = {}

    @model_validator(mode="after")
    def _check(self) -> Layer:
        # Shifts are counted from the start: one in year 9999 would overflow the arithmetic.
        if not MIN_YEAR <= self.start.year <= MAX_YEAR:
            raise_if([(("start",), f"expected a date between {MIN_YEAR} and {MAX_YEAR}")])
        return self


class OverrideSpec(PolicyModel):
    """`person` is on call from `from` to `to`, for the group, or only instead of `instead_of`.

    Times without an offset are read in the group's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    person: Name
    instead_of: Name | None = None
    starts: datetime = Field(alias="from")
    ends: datetime = Field(alias="to")
    note: str = ""


class GroupSchedule(PolicyModel):
    timezone: TimeZoneName = "UTC"
    layers: list[Layer] = Field(min_length=1)
    overrides: list[OverrideSpec] = []

    @model_validator(mode="after")
    def _check(self) -> GroupSchedule:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names = [layer.name for layer in self.layers]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append((("layers", index, "name"), f"{name!r} names two layers"))
        for index, override in enumerate(self.overrides):
            if self.aware(override.ends) <= self.aware(override.starts):
                problems.append((("overrides", index, "to"), "expected a time after 'from'"))
            if override.instead_of == override.person:
                problems.append(
                    (("overrides", index, "instead_of"), "expected another person than 'person'")
                )
        raise_if(problems)
        return self

    def zone_of(self, layer: Layer) -> ZoneInfo:
        return ZoneInfo(layer.timezone or self.timezone)

    def aware(self, moment: datetime) -> datetime:
        """`moment` with its offset, or read in the group's zone when it has none."""
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(self.timezone))


class OnCallPolicy(PolicyModel):
    groups: dict[Name, GroupSchedule] = {}


def directory_problems(
    policy: OnCallPolicy, people: Mapping[str, bool], groups: Collection[str]
) -> list[str]:
    """What the policy names that the directory has not: each problem with the file and key.

    `people` maps each username to whether the person is active; `groups` are the group names.
    """
    problems: list[str] = []

    def check(path: tuple[str | int, ...], username: str | None) -> None:
        if username is None:
            return
        where = f"{FILENAME}: {format_path(path)}"
        if username not in people:
            problems.append(f"{where}: {username!r} is not a person in the directory")
        elif not people[username]:
            problems.append(f"{where}: {username!r} is deactivated in the directory")

    for group, schedule in policy.groups.items():
        if group not in groups:
            problems.append(f"{FILENAME}: groups.{group}: not a group in the directory")
        for i, layer in enumerate(schedule.layers):
            for j, username in enumerate(layer.people):
                check(("groups", group, "layers", i, "people", j), username)
        for i, override in enumerate(schedule.overrides):
            check(("groups", group, "overrides", i, "person"), override.person)
            check(("groups", group, "overrides", i, "instead_of"), override.instead_of)
    return problems
