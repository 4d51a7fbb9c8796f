"""People's on-call shifts as iCalendar, who may read them, and the secret feed URLs.

A calendar app cannot send a bearer token, so each person may have one feed URL: a token signed
with the secret key (itilflow/signing.py) that names the person and a nonce kept in
`oncall_feed`. Making a new URL replaces the nonce (the old URL stops working at once), revoking
deletes it, and a person deactivated in the directory has no feed. The URL shows shifts only:
times, groups and layers, nothing about incidents.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlmodel import Session

from itilflow import clock, signing
from itilflow.models import Engineer, OnCallFeed
from itilflow.services.oncall import Shift
from itilflow.services.oncall_overrides import may_manage
from itilflow.services.principals import Principal

FEED_PURPOSE = "oncall-feed"
# A feed URL is signed for this long; a new one is made with `POST .../feed` before it lapses.
FEED_VALID_FOR = timedelta(days=366)
PRODID = "-//itilflow//on-call//EN"


def may_read_shifts(session: Session, principal: Principal, username: str) -> bool:
    """The person themselves, an admin, or whoever manages one of the person's groups."""
    if principal.has("admin") or (principal.kind == "person" and principal.name == username):
        return True
    person = session.get(Engineer, username)
    return person is not None and any(
        may_manage(session, principal, group) for group in person.memberships()
    )


def issue_feed(*, session: Session, secret: str, username: str, by: str) -> str:
    """A new feed token for `username`, voiding any earlier one."""
    nonce = secrets.token_urlsafe(16)
    row = session.get(OnCallFeed, username)
    if row is None:
        row = OnCallFeed(username=username, nonce=nonce, created_by=by, created_at=clock.now())
    else:
        row.nonce, row.created_by, row.created_at = nonce, by, clock.now()
    session.add(row)
    session.flush()
    payload = {"u": username, "n": nonce}
    return signing.sign(payload, secret=secret, purpose=FEED_PURPOSE, valid_for=FEED_VALID_FOR)


def revoke_feed(*, session: Session, username: str) -> bool:
    """Void `username`'s feed URL; False when there was none."""
    row = session.get(OnCallFeed, username)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def feed_owner(*, session: Session, secret: str, token: str) -> str:
    """The username a feed token is for; signing.BadToken when it is not (any more) valid."""
    payload = signing.verify(token, secret=secret, purpose=FEED_PURPOSE)
    username, nonce = str(payload.get("u", "")), str(payload.get("n", ""))
    row = session.get(OnCallFeed, username)
    if row is None or not secrets.compare_digest(row.nonce.encode(), nonce.encode()):
        raise signing.BadToken("the feed has been revoked or replaced")
    person = session.get(Engineer, username)
    if person is None or not person.active:
        raise signing.BadToken("the feed's person is no longer in the directory")
    return username


def shifts_calendar(shifts: Sequence[Shift], *, person: str, now: datetime) -> bytes:
    """`shifts` as an iCalendar file: one event per shift, in UTC (a calendar app shows them
    in its own zone; a shift across a DST change keeps its real length)."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"On call: {person}")
    for shift in shifts:
        event = Event()
        event.add("uid", f"{shift.group}-{shift.person}-{shift.starts:%Y%m%dT%H%M%SZ}@itilflow")
        event.add("dtstamp", now)
        event.add("dtstart", shift.starts)
        event.add("dtend", shift.ends)
        where = shift.layer if shift.source == "rotation" else f"{shift.layer}, override"
        event.add("summary", f"On call: {shift.group} ({where})")
        event.add("categories", ["on-call", shift.group])
        calendar.add_component(event)
    return calendar.to_ical()
