"""Who is on call: the arithmetic of oncall.yaml's rotations, layers and overrides.

Pure functions of the policy, the overrides and an instant: no session, no clock. Shift
boundaries are local wall times (a day's shift across a DST change lasts 23 or 25 hours, and the
handoff stays at 09:00 on the wall), turned into instants by the time-zone database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from itilflow.policies.calendars import WEEKDAYS
from itilflow.policies.oncall import PERIOD_DAYS, GroupSchedule, Layer, OnCallPolicy

# The longest range shifts are listed for at once (a calendar feed asks for about a year).
MAX_RANGE = timedelta(days=400)


@dataclass(frozen=True)
class Cover:
    """An override: `person` on call in [starts, ends), for the whole group or only where
    `instead_of` would be. `source` says where it comes from: "policy" or "api:<id>"."""

    person: str
    starts: datetime
    ends: datetime
    instead_of: str | None = None
    source: str = "policy"
    note: str = ""


@dataclass(frozen=True)
class OnCall:
    """Who is on call for a group at an instant, and why."""

    group: str
    person: str
    layer: str  # the layer that put them there ("override": no layer had anyone)
    source: str  # "rotation", or the override's source ("policy", "api:<id>")
    # Whom the layers name, before overrides (None when only an override has someone).
    scheduled: str | None


@dataclass(frozen=True)
class Shift:
    """A stretch of time one person is on call for a group."""

    group: str
    person: str
    layer: str
    source: str
    starts: datetime
    ends: datetime


def policy_covers(schedule: GroupSchedule) -> list[Cover]:
    """The policy's own overrides as covers, their times made aware."""
    return [
        Cover(
            person=spec.person,
            instead_of=spec.instead_of,
            starts=schedule.aware(spec.starts).astimezone(UTC),
            ends=schedule.aware(spec.ends).astimezone(UTC),
            note=spec.note,
        )
        for spec in schedule.overrides
    ]


def on_call_at(
    group: str, schedule: GroupSchedule, at: datetime, covers: Sequence[Cover] = ()
) -> OnCall | None:
    """Who is on call for `group` at `at`: the last layer covering that hour, then every cover
    in force in order (a later cover wins; one `instead_of` someone applies only where they
    would be on call). None: nobody (before the first shift, or outside every layer's hours)."""
    at = _utc(at)
    found: OnCall | None = None
    for layer in schedule.layers:
        person = layer_person(schedule, layer, at)
        if person is not None:
            found = OnCall(group, person, layer.name, "rotation", person)
    scheduled = found.person if found else None
    for cover in covers:
        if not cover.starts <= at < cover.ends:
            continue
        if cover.instead_of is not None and (found is None or found.person != cover.instead_of):
            continue
        layer = found.layer if found else "override"
        found = OnCall(group, cover.person, layer, cover.source, scheduled)
    return found


def layer_person(schedule: GroupSchedule, layer: Layer, at: datetime) -> str | None:
    """Whom `layer` names at `at`, or None when it has not started or does not cover the hour."""
    zone = schedule.zone_of(layer)
    index = shift_index(layer, zone, at)
    if index is None or not _in_hours(layer, zone, at):
        return None
    return layer.people[index % len(layer.people)]


def handoff_at(layer: Layer, zone: ZoneInfo, index: int) -> datetime:
    """The instant shift `index` (from 0) of `layer` starts."""
    day = layer.start + timedelta(days=index * PERIOD_DAYS[layer.every])
    return datetime.combine(day, layer.handoff, tzinfo=zone).astimezone(UTC)


def shift_index(layer: Layer, zone: ZoneInfo, at: datetime) -> int | None:
    """The number of the shift running at `at`, or None before the first."""
    at = _utc(at)
    if at < handoff_at(layer, zone, 0):
        return None
    # A first guess from the local date, corrected against the real boundaries (DST moves them).
    index = max(0, (at.astimezone(zone).date() - layer.start).days // PERIOD_DAYS[layer.every])
    while index > 0 and handoff_at(layer, zone, index) > at:
        index -= 1
    while handoff_at(layer, zone, index + 1) <= at:
        index += 1
    return index


def _in_hours(layer: Layer, zone: ZoneInfo, at: datetime) -> bool:
    if not layer.hours:
        return True
    local = at.astimezone(zone)
    minute = local.hour * 60 + local.minute
    ranges = layer.hours.get(WEEKDAYS[local.weekday()], [])  # type: ignore[call-overload]
    return any(start <= minute < end for start, end in ranges)


def group_shifts(
    group: str,
    schedule: GroupSchedule,
    start: datetime,
    end: datetime,
    covers: Sequence[Cover] = (),
) -> list[Shift]:
    """Everyone's shifts for `group` in [start, end), cut at the range's ends."""
    start, end = _utc(start), _utc(end)
    if end - start > MAX_RANGE:
        raise ValueError(f"expected a range of at most {MAX_RANGE.days} days")
    points = sorted({start, end, *_change_points(schedule, covers, start, end)})
    shifts: list[Shift] = []
    for begin, finish in pairwise(points):
        who = on_call_at(group, schedule, begin, covers)
        if who is None:
            continue
        last = shifts[-1] if shifts else None
        if (
            last
            and last.ends == begin
            and (last.person, last.layer, last.source)
            == (
                who.person,
                who.layer,
                who.source,
            )
        ):
            shifts[-1] = replace(last, ends=finish)
        else:
            shifts.append(Shift(group, who.person, who.layer, who.source, begin, finish))
    return shifts


def person_shifts(
    policy: OnCallPolicy,
    person: str,
    start: datetime,
    end: datetime,
    covers: Mapping[str, Sequence[Cover]] | None = None,
) -> list[Shift]:
    """`person`'s shifts in every group in [start, end), in time order. `covers` are the
    overrides per group besides the policy's own."""
    found = [
        shift
        for group, schedule in policy.groups.items()
        for shift in group_shifts(
            group,
            schedule,
            start,
            end,
            [*policy_covers(schedule), *(covers or {}).get(group, ())],
        )
        if shift.person == person
    ]
    return sorted(found, key=lambda shift: (shift.starts, shift.group))


def _change_points(
    schedule: GroupSchedule, covers: Iterable[Cover], start: datetime, end: datetime
) -> Iterator[datetime]:
    """Every instant in (start, end) at which who is on call may change."""
    for layer in schedule.layers:
        zone = schedule.zone_of(layer)
        index = shift_index(layer, zone, start)
        index = 0 if index is None else index + 1
        while (moment := handoff_at(layer, zone, index)) < end:
            if moment > start:
                yield moment
            index += 1
        yield from _hour_edges(layer, zone, start, end)
    for cover in covers:
        yield from (moment for moment in (cover.starts, cover.ends) if start < moment < end)


def _hour_edges(layer: Layer, zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[datetime]:
    if not layer.hours:
        return
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last: date = end.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        for begin, finish in layer.hours.get(WEEKDAYS[day.weekday()], []):  # type: ignore[call-overload]
            for minute in (begin, finish):
                moment = datetime.combine(
                    day + timedelta(days=minute // 1440),
                    time(minute % 1440 // 60, minute % 60),
                    tzinfo=zone,
                ).astimezone(UTC)
                if start < moment < end:
                    yield moment
        day += timedelta(days=1)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime")
    return moment.astimezone(UTC)
