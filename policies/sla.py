"""SLA targets (sla.yaml) and the SLA figures of one incident, computed from its timeline alone.

Because the figures come only from the timeline and a policy, an incident can be recomputed under
another policy (what-if reports) and a timer can be rebuilt after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from itilflow.policies._base import PRIORITIES, Name, PolicyModel, Priority, plain_list, raise_if
from itilflow.policies.calendars import Calendar, CalendarSpec
from itilflow.policies.durations import Duration

# Event kinds that drive the clocks; any other kind on the timeline (notes, assignments...) is
# ignored unless sla.yaml names it in `pause_on`.
CLOCK_KINDS: tuple[str, ...] = (
    "opened",
    "acknowledged",
    "on_hold",
    "resumed",
    "resolved",
    "reopened",
    "closed",
)
_NOT_PAUSABLE = frozenset(CLOCK_KINDS) - {"on_hold"}
# The shortest interval between two progress updates to the reporter.
MIN_UPDATE_INTERVAL = timedelta(minutes=5)
MIN_UPDATE_INTERVAL_TEXT = "5m"
# Events at the same instant are applied in lifecycle order, whatever order they were stored in.
_RANK = {kind: rank for rank, kind in enumerate(CLOCK_KINDS)}


class SlaTarget(PolicyModel):
    response: Duration
    resolution: Duration
    calendar: Name

    @model_validator(mode="after")
    def _check(self) -> SlaTarget:
        if self.response > self.resolution:
            raise_if([(("response",), "the response target is longer than the resolution target")])
        return self


class SlaPolicy(PolicyModel):
    calendars: dict[Name, CalendarSpec]
    targets: dict[Priority, SlaTarget]
    # Statuses during which the resolution clock stops (waiting on the reporter).
    pause_on: list[Name] = ["on_hold"]
    # How often the reporter is sent a progress update while the incident is open (not on hold);
    # priorities left out get none (services/customer_updates.py).
    progress_updates: dict[Priority, Duration] = {}

    @model_validator(mode="after")
    def _check(self) -> SlaPolicy:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for priority in PRIORITIES:
            if priority not in self.targets:
                problems.append((("targets", priority), "missing; every priority needs a target"))
        for priority, target in self.targets.items():
            if target.calendar not in self.calendars:
                defined = plain_list(self.calendars) or "none"
                problems.append(
                    (
                        ("targets", priority, "calendar"),
                        f"calendar {target.calendar!r} is not defined under 'calendars' "
                        f"(defined: {defined})",
                    )
                )
        for index, status in enumerate(self.pause_on):
            if status in _NOT_PAUSABLE:
                message = f"{status!r} cannot pause the clock; expected a status such as on_hold"
                problems.append((("pause_on", index), message))
        for priority, every in self.progress_updates.items():
            if every < MIN_UPDATE_INTERVAL:
                problems.append(
                    (
                        ("progress_updates", priority),
                        f"expected at least {MIN_UPDATE_INTERVAL_TEXT}: each interval mails the "
                        "reporter, more often floods their mailbox",
                    )
                )
        raise_if(problems)
        return self

    def calendar_for(self, priority: str) -> Calendar:
        return self.calendars[self.target_for(priority).calendar].calendar()

    def target_for(self, priority: str) -> SlaTarget:
        try:
            return self.targets[priority]  # type: ignore[index]
        except KeyError:
            raise ValueError(
                f"unknown priority {priority!r}; expected one of {plain_list(PRIORITIES)}"
            ) from None


class StatusEvent(BaseModel):
    """One entry of an incident's timeline, as far as the SLA clocks care."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    kind: str


class SlaFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    priority: str
    calendar: str
    response_target: timedelta
    resolution_target: timedelta
    opened_at: datetime
    responded_at: datetime | None
    # Set while the incident stands resolved or closed; None again after a reopen.
    resolved_at: datetime | None
    response_due: datetime
    # None while paused, unless the target was already used up before the pause.
    resolution_due: datetime | None
    time_to_respond: timedelta | None
    # Business time spent on resolution so far, excluding holds and resolved-then-reopened gaps.
    resolution_elapsed: timedelta
    # resolution_elapsed once the incident stands resolved; None while it is still open.
    time_to_resolve: timedelta | None
    time_on_hold: timedelta
    response_breached: bool
    resolution_breached: bool
    paused: bool


def sla_deadline(calendar: Calendar, start: datetime, duration_business: timedelta) -> datetime:
    """When `duration_business` of open time on `calendar` has passed since `start`."""
    return calendar.add_business_time(start, duration_business)


@dataclass
class _ResolutionClock:
    """The resolution clock after replaying the timeline: its running stretches (`segments`),
    the first response, the standing resolution and the time spent on hold."""

    segments: list[tuple[datetime, datetime]] = field(default_factory=list)
    state: str = "running"  # running | paused | resolved
    on_hold: timedelta = field(default_factory=timedelta)
    responded_at: datetime | None = None
    resolved_at: datetime | None = None


def _replay(
    known: Sequence[StatusEvent], opened_at: datetime, pause_on: frozenset[str], now: datetime
) -> _ResolutionClock:
    clock = _ResolutionClock()
    # `running_since` starts the stretch still open.
    running_since: datetime = opened_at
    paused_since: datetime | None = None
    for event in known:
        at, kind = event.at.astimezone(UTC), event.kind
        if at < opened_at:
            continue
        if clock.responded_at is None and kind in ("acknowledged", "resolved", "closed"):
            clock.responded_at = at
        if kind in pause_on:
            if clock.state == "running":
                clock.segments.append((running_since, at))
                clock.state, paused_since = "paused", at
        elif kind == "resumed":
            if clock.state == "paused" and paused_since is not None:
                clock.on_hold += at - paused_since
                clock.state, running_since = "running", at
        elif kind in ("resolved", "closed"):
            if clock.state == "running":
                clock.segments.append((running_since, at))
            elif clock.state == "paused" and paused_since is not None:
                clock.on_hold += at - paused_since
            if clock.state != "resolved":
                clock.state, clock.resolved_at = "resolved", at
        elif kind == "reopened" and clock.state == "resolved":
            # The same clock carries on: earlier segments stay in `segments`.
            clock.state, running_since, clock.resolved_at = "running", at, None

    if clock.state == "running":
        clock.segments.append((running_since, now))
    elif clock.state == "paused" and paused_since is not None:
        clock.on_hold += now - paused_since
    return clock


def _resolution_deadline(
    calendar: Calendar,
    segments: Sequence[tuple[datetime, datetime]],
    target: timedelta,
    opened_at: datetime,
    *,
    paused: bool,
) -> tuple[timedelta, datetime | None, bool]:
    """(business time spent, the resolution deadline, whether it fell within running time)."""
    # Walk the running segments until the target is used up; that moment is the deadline.
    elapsed = timedelta()
    resolution_due: datetime | None = None
    last_start, elapsed_before_last = opened_at, timedelta()
    for start, end in segments:
        part = calendar.business_time_between(start, end)
        if resolution_due is None and elapsed + part >= target:
            resolution_due = calendar.add_business_time(start, target - elapsed)
        last_start, elapsed_before_last = start, elapsed
        elapsed += part
    # Only a deadline reached within running time can be missed; a projected one cannot (an
    # incident resolved while on hold had time left, however long the hold).
    used_up = resolution_due is not None
    if resolution_due is None and not paused:
        # Not used up yet: project from the last running segment.
        resolution_due = calendar.add_business_time(last_start, target - elapsed_before_last)
    return elapsed, resolution_due, used_up


def compute_sla(
    events: Sequence[StatusEvent], policy: SlaPolicy, priority: str, now: datetime
) -> SlaFigures:
    """SLA figures of one incident as known at `now` (events after `now` are not yet known).

    - Response: the first `acknowledged` (or `resolved`/`closed` without one) after `opened`,
      measured in business time; holds do not stop the response clock.
    - Resolution: business time from `opened`, stopped by a `pause_on` status until `resumed`
      (or resolved), stopped by `resolved`/`closed`, and continued by `reopened`: time already
      spent still counts, the gap between resolution and reopen does not.
    - A target is breached when the response / resolution (or `now`, if still pending) comes
      after its due moment.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    target = policy.target_for(priority)
    calendar = policy.calendar_for(priority)

    known = sorted(
        (event for event in events if event.at <= now),
        key=lambda event: (event.at, _RANK.get(event.kind, len(_RANK))),
    )
    opened_at = next((e.at.astimezone(UTC) for e in known if e.kind == "opened"), None)
    if opened_at is None:
        raise ValueError("the timeline has no 'opened' event (at or before now)")
    clock = _replay(known, opened_at, frozenset(policy.pause_on), now)
    state, segments = clock.state, clock.segments
    responded_at, resolved_at, on_hold = clock.responded_at, clock.resolved_at, clock.on_hold

    response_due = calendar.add_business_time(opened_at, target.response)
    time_to_respond = (
        calendar.business_time_between(opened_at, responded_at) if responded_at else None
    )
    elapsed, resolution_due, used_up = _resolution_deadline(
        calendar, segments, target.resolution, opened_at, paused=state == "paused"
    )

    resolution_moment = resolved_at if state == "resolved" else now
    return SlaFigures(
        priority=priority,
        calendar=target.calendar,
        response_target=target.response,
        resolution_target=target.resolution,
        opened_at=opened_at,
        responded_at=responded_at,
        resolved_at=resolved_at,
        response_due=response_due,
        resolution_due=resolution_due,
        time_to_respond=time_to_respond,
        resolution_elapsed=elapsed,
        time_to_resolve=elapsed if state == "resolved" else None,
        time_on_hold=on_hold,
        response_breached=(responded_at or now) > response_due,
        resolution_breached=(
            used_up
            and resolution_due is not None
            and resolution_moment is not None
            and resolution_moment > resolution_due
        ),
        paused=state == "paused",
    )
