"""The gateway's FastAPI dependencies: what create_app builds once, and how a route asks for it.

create_app puts one `Gateway` on `app.state.gateway`; the routers' dependencies read it from the
request, so the routers are plain modules with no closure over the app. The cheap dependencies
are `async def`: a sync one would cost a worker-thread hop on every request of the intake.
The intake's two routes read the Gateway with `gateway_of(request)` (see there).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from itilflow.engine import ChangeEngine
from itilflow.gateway.writer import GroupWriter
from itilflow.models.principal import ROLES
from itilflow.notifications import MailSettings
from itilflow.policies import Policies
from itilflow.services import incidents, principals
from itilflow.services.alerts import AlertIn, AlertResult
from itilflow.services.principals import Principal, bootstrap_admin
from itilflow.settings import Settings

API_PREFIX = "/api"
# Seconds a per-principal token's lookup is remembered: how long a revocation or a role change
# may take to reach a running gateway. Short enough to act on, long enough that the intake
# (~1200 requests/s, bench/intake.py) never waits on the database for who is asking.
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 4096
BOOTSTRAP = bootstrap_admin()

log = logging.getLogger("itilflow.gateway.auth")


@dataclass
class Gateway:
    """Everything the routes share, built once by create_app."""

    settings: Settings
    policies: Policies
    engine: Engine
    token: str
    secret: str
    change_engine: ChangeEngine
    alert_writer: GroupWriter[list[AlertIn], list[AlertResult]]
    incident_writer: GroupWriter[incidents.OpenRequest, incidents.Opened]
    # The runtime's mail settings with a short timeout: an approver waits on the page for it.
    code_mail: MailSettings
    # Per-principal tokens' lookups (TokenCache below); create_app makes it on `engine`.
    tokens: TokenCache = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenCache(self.engine)

    def incident_url(self, incident_id: int) -> str:
        return f"{self.settings.public_url}{API_PREFIX}/incidents/{incident_id}"


def gateway_of(request: Request) -> Gateway:
    """The app's Gateway. The intake's routes and the token check call this rather than depend
    on GatewayDep: a sub-dependency costs FastAPI ~70 calls per request."""
    return request.app.state.gateway  # type: ignore[no-any-return]


async def get_gateway(request: Request) -> Gateway:
    return gateway_of(request)


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def get_change_engine(gateway: GatewayDep) -> ChangeEngine:
    return gateway.change_engine


def get_session(gateway: GatewayDep) -> Iterator[Session]:
    with Session(gateway.engine, expire_on_commit=False) as session:
        yield session


class TokenCache:
    """Token hash -> (Principal, valid until): the intake's hot path authenticates from memory.

    A per-principal token is looked up in the database at most once per `ttl` seconds (and never
    past its expiry); concurrent requests with the same token share one lookup. A revocation, a
    role change or a deactivation therefore takes effect within `ttl` seconds (docs/security.md,
    "Principals"). The lookup notes the token's last use, at most once a minute
    (services/principals.py: LAST_USE_RESOLUTION). Unknown tokens are not remembered: a token
    made a second after a failed try works at once.
    """

    def __init__(
        self, engine: Engine, ttl: float = TOKEN_CACHE_SECONDS, size: int = TOKEN_CACHE_SIZE
    ) -> None:
        self.engine = engine
        self.ttl = ttl
        self.size = size
        self._entries: dict[str, tuple[Principal, float]] = {}
        self._pending: dict[str, asyncio.Future[Principal | None]] = {}

    def forget(self) -> None:
        """Drop every remembered token (the next request of each looks it up again)."""
        self._entries.clear()

    async def principal(self, token: str) -> Principal | None:
        """The token's principal, or None when it is unknown, revoked, expired or its person is
        no longer active."""
        digest = principals.hash_token(token)
        entry = self._entries.get(digest)
        if entry is not None and time.monotonic() < entry[1]:
            return entry[0]
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            found = await anyio.to_thread.run_sync(self._look_up, token)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it; no "never retrieved" warning
            raise
        finally:
            del self._pending[digest]
        principal = None
        if found is not None:
            principal, valid_for = found
            self._remember(digest, principal, min(self.ttl, valid_for))
        future.set_result(principal)
        return principal

    def _look_up(self, token: str) -> tuple[Principal, float] | None:
        now = datetime.now(UTC)
        with Session(self.engine) as session:
            found = principals.find_token_principal(session=session, token=token, now=now)
            session.commit()  # the last use, when it was noted
        if found is None:
            return None
        principal, expires_at = found
        valid_for = (expires_at - now).total_seconds() if expires_at else self.ttl
        return principal, valid_for

    def _remember(self, digest: str, principal: Principal, seconds: float) -> None:
        if seconds <= 0:
            return
        now = time.monotonic()
        if len(self._entries) >= self.size:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= self.size:
                self._entries.clear()
        self._entries[digest] = (principal, now + seconds)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(request: Request, authorization: str | None) -> Principal:
    """Who is asking: the holder of the shared ITILFLOW_API_TOKEN (the bootstrap admin, compared
    in constant time) or of a per-principal token (by its hash, through the gateway's cache).
    A browser session is the other way in (the sign-in's cookie), checked here too once it
    exists. Raises 401."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise _unauthorized("missing bearer token")
    gateway = gateway_of(request)
    if hmac.compare_digest(given.encode(), gateway.token.encode()):
        request.state.principal = BOOTSTRAP.name  # the access log's (gateway/access.py)
        return BOOTSTRAP
    try:
        principal = await gateway.tokens.principal(given)
    except SQLAlchemyError as exc:
        # Not a 500: a client (Alertmanager) sends the request again on a 503.
        log.warning("could not look up a token: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the token could not be checked (database unavailable): send it again",
            headers={"Retry-After": "5"},
        ) from exc
    if principal is None:
        raise _unauthorized("unknown, revoked or expired token")
    request.state.principal = principal.name
    return principal


async def authorize(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Principal:
    """Any authenticated principal, whatever its roles (routes use the role aliases below)."""
    return await authenticate(request, authorization)


def require(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated principal when it holds any of `roles` (or a role that
    implies one: services/principals.py ROLE_IMPLIES), else 403 naming the role needed.

    One dependency that authenticates and checks (not one on top of `authorize`): a
    sub-dependency costs FastAPI ~70 calls per request on the intake's path."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"roles: expected some of {', '.join(ROLES)}, got {roles!r}")
    needed = " or ".join(roles)

    async def holder(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Principal:
        principal = await authenticate(request, authorization)
        if not principal.has(*roles):
            log.warning(
                "refused %s %s to %s %r: needs the role %s",
                request.method,
                request.url.path,
                principal.kind,
                principal.name,
                needed,
            )
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this needs the role {needed}; {principal.name} has not"
            )
        return principal

    holder.roles = roles  # type: ignore[attr-defined]  # what tests and docs read back
    holder.__name__ = f"require_{'_or_'.join(roles)}"
    return holder


ChangeEngineDep = Annotated[ChangeEngine, Depends(get_change_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
# The authenticated principal, checked for a role (admin holds every role). Every /api route
# takes one of these; its name is the timeline's actor.
Client = Annotated[Principal, Depends(authorize)]
Reporter = Annotated[Principal, Depends(require("reporter"))]
Agent = Annotated[Principal, Depends(require("agent"))]
Admin = Annotated[Principal, Depends(require("admin"))]
