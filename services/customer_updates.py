"""Progress updates to the customer: when the next one is due and what a due one says.

The SLA policy's `progress_updates` gives each priority an interval (P1 30m, P2 2h). An open
incident's reporter then hears about it every interval: the update is due that long after the
last update sent (or after intake, a resume or a reopen), never while the incident is on hold,
and not after it is resolved (services/sla_timers.py plans it as the "customer_update" timer).

A comment to the reporter does not move the timer: the plan promises a regular cadence, and the
update carries the latest such comment. When nothing new was said to the reporter since the
last update, the reporter still gets the update (its status and owner, and that there is no
news: silence reads as being forgotten), and the assignee is reminded to write one before the
next. Both decisions are pure functions of the timeline, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from itilflow.models import Engineer, Incident, TimelineEntry
from itilflow.policies import StatusEvent

KIND = "customer_update"  # the timer's kind, its key's prefix and its timeline entry's kind
# The events after which the updates count their interval afresh.
RESTARTS = ("opened", "resumed", "reopened")


def next_key(fired_keys: Iterable[str]) -> str:
    """The key of the first update not sent yet: customer_update:1, :2, ..."""
    fired = set(fired_keys)
    sequence = 1
    while f"{KIND}:{sequence}" in fired:
        sequence += 1
    return f"{KIND}:{sequence}"


def next_due(
    opened_at: datetime,
    events: Sequence[StatusEvent],
    last_update: datetime | None,
    interval: timedelta,
) -> datetime:
    """An interval after the last update sent, intake, resume or reopen, whichever is latest:
    after a long outage of the runner the next update follows the late one by a whole interval
    rather than in a burst of catch-ups."""
    starts = [opened_at, *(event.at for event in events if event.kind in RESTARTS)]
    if last_update is not None:
        starts.append(last_update)
    return max(starts) + interval


def last_update_at(entries: Sequence[TimelineEntry]) -> datetime | None:
    """When the last update went to the customer (its timeline entry), None before the first."""
    return max((entry.at for entry in entries if entry.kind == KIND), default=None)


@dataclass(frozen=True)
class UpdateContent:
    """What a due update says: the latest comment to the reporter (and when), whether it is new
    since the last update, and so whether the assignee is reminded to write one."""

    comment: str | None
    comment_at: datetime | None
    news: bool

    @property
    def remind_assignee(self) -> bool:
        return not self.news


def is_comment_to_reporter(entry: TimelineEntry, reporter_actors: set[str]) -> bool:
    """A public comment by someone other than the reporter (theirs are replies, not news)."""
    return (
        entry.kind == "commented"
        and (entry.data or {}).get("visibility") == "public"
        and entry.actor.strip().lower() not in reporter_actors
    )


def update_content(entries: Sequence[TimelineEntry], reporter_actors: set[str]) -> UpdateContent:
    """What the update due now says, from the incident's timeline (oldest first)."""
    since = last_update_at(entries)
    comments = [entry for entry in entries if is_comment_to_reporter(entry, reporter_actors)]
    if not comments:
        return UpdateContent(comment=None, comment_at=None, news=False)
    latest = comments[-1]
    return UpdateContent(
        comment=latest.message,
        comment_at=latest.at,
        news=since is None or latest.at > since,
    )


def reporter_actors(session: Session, incident: Incident) -> set[str]:
    """The names the reporter's own comments carry (lower case): their address, and the
    usernames of the directory people with that address (the console's replies)."""
    address = (incident.reporter_email or "").strip().lower()
    if not address:
        return set()
    usernames = session.exec(
        select(Engineer.username).where(func.lower(col(Engineer.email)) == address)
    )
    return {address, *(name.lower() for name in usernames)}


def reporter_language(session: Session, incident: Incident) -> str | None:
    """The reporter's language when the directory knows them, else None (the incident's)."""
    address = (incident.reporter_email or "").strip().lower()
    if not address:
        return None
    languages = session.exec(
        select(Engineer.language).where(
            func.lower(col(Engineer.email)) == address, col(Engineer.language).is_not(None)
        )
    ).first()
    return languages or None
