"""Browser sign-in for people: the emailed one-time code and link, and the sessions they start.

A press of the sign-in form names a person by username or email. When the name is a person of
the directory with an address on record, one code and one link are issued together (either one
signs in, once, within SIGNIN_VALID_FOR) for the caller to mail to that address. Whatever the
name, a row is stored and the caller shows the same page, so the form does not tell who exists.

A session's cookie value is random; only its SHA-256 is stored. A session ends when it has been
idle too long, at its absolute expiry, or when it is revoked (sign-out, or an admin revoking a
person's sessions).

Pure rules and session work only: the gateway mails and sets cookies around them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from itilflow import clock, signing
from itilflow.models import BrowserSession, Engineer, SigninRequest

SIGNIN_VALID_FOR = timedelta(minutes=15)
CODE_DIGITS = 8
MAX_CODE_ATTEMPTS = 5
# Sign-in mails per person, and presses of the form per client address, within RATE_WINDOW.
RATE_WINDOW = timedelta(minutes=15)
MAX_PER_PERSON = 3
MAX_PER_CLIENT = 10
# last_seen_at (and the idle expiry) moves at most this often: not a write per page.
SEEN_RESOLUTION = timedelta(minutes=1)
TICKET_PURPOSE = "signin-ticket"
LINK_PURPOSE = "signin-link"


class SigninRefused(ValueError):
    """The code or link does not sign anyone in; the message says why, for the page."""


class TooManySignins(SigninRefused):
    """This client address pressed the form too often within RATE_WINDOW."""


@dataclass(frozen=True)
class Started:
    """One press of the form. `ticket` goes into the code form whatever the name was;
    `mail` is None when nothing is to be mailed (unknown name, or the person's limit is hit)."""

    ticket: str
    mail: SigninMail | None


@dataclass(frozen=True)
class SigninMail:
    person: str
    name: str
    address: str
    code: str
    link_token: str


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _code_hash(secret: str, request_id: int, code: str) -> str:
    message = f"signin-code:{request_id}:{code}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def find_person(session: Session, name_or_email: str) -> Engineer | None:
    """The active person with this username, or with this address (case-insensitive)."""
    given = name_or_email.strip()[:254]
    if not given:
        return None
    engineer = session.get(Engineer, given)
    if engineer is None and "@" in given:
        engineer = session.exec(
            select(Engineer).where(func.lower(Engineer.email) == given.lower())
        ).first()
    return engineer if engineer is not None and engineer.active else None


def _count_since(session: Session, column: object, value: str, since: datetime) -> int:
    return session.exec(
        select(func.count())
        .select_from(SigninRequest)
        .where(column == value, col(SigninRequest.created_at) > since)
    ).one()


def start_signin(
    *, session: Session, name_or_email: str, client: str, secret: str, now: datetime | None = None
) -> Started:
    """Store one press of the form; raises TooManySignins for a client over its limit. The
    caller commits, then mails `mail` when there is one."""
    now = now or clock.now()
    since = now - RATE_WINDOW
    if _count_since(session, SigninRequest.client, client, since) >= MAX_PER_CLIENT:
        raise TooManySignins("too many sign-in requests from your address: wait a few minutes")
    engineer = find_person(session, name_or_email)
    if engineer is not None and not engineer.email:
        engineer = None  # no address on record: nobody to mail, say the same as for a stranger
    over_limit = engineer is not None and (
        _count_since(session, SigninRequest.person, engineer.username, since) >= MAX_PER_PERSON
    )
    row = SigninRequest(client=client[:64], created_at=now, expires_at=now + SIGNIN_VALID_FOR)
    session.add(row)
    session.flush()
    assert row.id is not None
    ticket = signing.sign(
        {"request": row.id}, secret=secret, purpose=TICKET_PURPOSE, valid_for=SIGNIN_VALID_FOR
    )
    if engineer is None or over_limit:
        return Started(ticket=ticket, mail=None)
    assert engineer.email is not None
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    nonce = secrets.token_urlsafe(16)
    row.person = engineer.username
    row.code_hash = _code_hash(secret, row.id, code)
    row.link_hash = _sha256(nonce)
    session.add(row)
    link_token = signing.sign(
        {"request": row.id, "nonce": nonce},
        secret=secret,
        purpose=LINK_PURPOSE,
        valid_for=SIGNIN_VALID_FOR,
    )
    mail = SigninMail(engineer.username, engineer.name, engineer.email, code, link_token)
    return Started(ticket=ticket, mail=mail)


def withdraw_signin(*, session: Session, ticket: str, secret: str) -> None:
    """The mail could not be sent: the code and link it carried are void."""
    request = _request_of(session, ticket, TICKET_PURPOSE, secret)
    request.used_at = request.used_at or clock.now()
    session.add(request)


def _request_of(session: Session, token: str, purpose: str, secret: str) -> SigninRequest:
    try:
        payload = signing.verify(token, secret=secret, purpose=purpose)
    except signing.BadToken as exc:
        raise SigninRefused(str(exc)) from None
    request = session.get(SigninRequest, payload.get("request"))
    if request is None:
        raise SigninRefused("the sign-in request is unknown")
    if purpose == LINK_PURPOSE and not hmac.compare_digest(
        request.link_hash or "", _sha256(str(payload.get("nonce", "")))
    ):
        raise SigninRefused("the link has been altered")
    return request


def _use(session: Session, request: SigninRequest, now: datetime) -> str:
    """Mark the request used, atomically (a second use at the same moment finds it used)."""
    if request.person is None or request.used_at is not None:
        raise SigninRefused("this sign-in code or link has been used or is void")
    if now >= request.expires_at:
        raise SigninRefused("this sign-in code or link has expired: ask for a new one")
    used = session.execute(
        update(SigninRequest)
        .where(col(SigninRequest.id) == request.id, col(SigninRequest.used_at).is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise SigninRefused("this sign-in code or link has been used or is void")
    return request.person


def redeem_code(
    *, session: Session, ticket: str, code: str, secret: str, now: datetime | None = None
) -> str:
    """The person the code signs in. A wrong code counts (the caller commits either way);
    MAX_CODE_ATTEMPTS wrong ones void the request. Raises SigninRefused."""
    now = now or clock.now()
    request = _request_of(session, ticket, TICKET_PURPOSE, secret)
    if request.used_at is not None:
        raise SigninRefused("this sign-in code or link has been used or is void")
    assert request.id is not None
    # A request without a person has no code: every code is wrong, counted the same way, so the
    # answers do not tell that the name was not a person.
    given = "".join(code.split())[:32]
    if not hmac.compare_digest(request.code_hash or "", _code_hash(secret, request.id, given)):
        request.attempts += 1
        if request.attempts >= MAX_CODE_ATTEMPTS:
            request.used_at = now
        session.add(request)
        left = MAX_CODE_ATTEMPTS - request.attempts
        raise SigninRefused(
            f"wrong code: {left} attempts left" if left > 0 else "wrong code: the code is now void"
        )
    return _use(session, request, now)


def redeem_link(
    *, session: Session, link_token: str, secret: str, now: datetime | None = None
) -> str:
    """The person the link signs in, once. Raises SigninRefused."""
    request = _request_of(session, link_token, LINK_PURPOSE, secret)
    return _use(session, request, now or clock.now())


def check_link(*, session: Session, link_token: str, secret: str) -> str:
    """The person a link would sign in, without using it (the confirmation page's GET)."""
    request = _request_of(session, link_token, LINK_PURPOSE, secret)
    if request.person is None or request.used_at is not None:
        raise SigninRefused("this sign-in link has been used or is void")
    if clock.now() >= request.expires_at:
        raise SigninRefused("this sign-in link has expired: ask for a new one")
    return request.person


# ------------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class SessionLimits:
    idle: timedelta
    lifetime: timedelta


def start_session(
    *,
    session: Session,
    person: str,
    via: str,
    client: str,
    limits: SessionLimits,
    now: datetime | None = None,
) -> tuple[str, BrowserSession]:
    """A new session for `person`: the cookie's value (given once) and the stored row."""
    now = now or clock.now()
    value = secrets.token_urlsafe(32)
    row = BrowserSession(
        id_hash=_sha256(value),
        person=person,
        via=via,
        client=client[:64],
        created_at=now,
        last_seen_at=now,
        idle_expires_at=min(now + limits.idle, now + limits.lifetime),
        expires_at=now + limits.lifetime,
    )
    session.add(row)
    session.flush()
    return value, row


def live_session(
    *, session: Session, cookie: str, limits: SessionLimits, now: datetime | None = None
) -> BrowserSession | None:
    """The live session a cookie names, its idle expiry moved on; None when it is unknown,
    revoked or expired. The caller commits."""
    now = now or clock.now()
    if not cookie or len(cookie) > 128:
        return None
    row = session.exec(
        select(BrowserSession).where(BrowserSession.id_hash == _sha256(cookie))
    ).first()
    if row is None or not row.live_at(now):
        return None
    if now - row.last_seen_at >= SEEN_RESOLUTION:
        row.last_seen_at = now
        row.idle_expires_at = min(now + limits.idle, row.expires_at)
        session.add(row)
    return row


def revoke_session(
    *, session: Session, session_id: int, revoked_by: str, now: datetime | None = None
) -> BrowserSession | None:
    row = session.get(BrowserSession, session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now or clock.now()
        row.revoked_by = revoked_by
        session.add(row)
    return row


def revoke_sessions_of(
    *, session: Session, person: str, revoked_by: str, now: datetime | None = None
) -> int:
    """Revoke every live session of `person` (an admin's action, or a person leaving); how
    many there were."""
    now = now or clock.now()
    rows = session.exec(
        select(BrowserSession).where(
            BrowserSession.person == person, col(BrowserSession.revoked_at).is_(None)
        )
    ).all()
    for row in rows:
        row.revoked_at = now
        row.revoked_by = revoked_by
        session.add(row)
    return len(rows)


def list_sessions(
    *, session: Session, person: str | None = None, live_only: bool = True
) -> list[BrowserSession]:
    now = clock.now()
    query = select(BrowserSession).order_by(col(BrowserSession.id))
    if person is not None:
        query = query.where(BrowserSession.person == person)
    rows = list(session.exec(query))
    return [row for row in rows if row.live_at(now)] if live_only else rows
