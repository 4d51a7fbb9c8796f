"""The gateway's FastAPI dependencies: what create_app builds once, and how a route asks for it.

create_app puts one `Gateway` on `app.state.gateway`; the routers' dependencies read it from the
request, so the routers are plain modules with no closure over the app. The cheap dependencies
are `async def`: a sync one would cost a worker-thread hop on every request of the intake.
The intake's two routes read the Gateway with `gateway_of(request)` (see there).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow.engine import ChangeEngine
from itilflow.gateway.writer import GroupWriter
from itilflow.notifications import MailSettings
from itilflow.policies import Policies
from itilflow.services import incidents
from itilflow.services.alerts import AlertIn, AlertResult
from itilflow.settings import Settings

API_PREFIX = "/api"


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


async def authorize(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The bearer-token check of every API route; the client's name for the timeline."""
    scheme, _, given = (authorization or "").partition(" ")
    token = gateway_of(request).token
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return "api"


ChangeEngineDep = Annotated[ChangeEngine, Depends(get_change_engine)]
SessionDep = Annotated[Session, Depends(get_session)]
Client = Annotated[str, Depends(authorize)]
