"""The HTTP gateway: create_app builds the one `Gateway` (gateway/deps.py) and includes one
router per resource; the routes translate HTTP to the services' rules and back.

Every write is committed before the response; the engine is never waited on. The runner picks
up the stored triggers and starts the flows.
"""

import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI, status
from fastapi.responses import JSONResponse
from sqlmodel import Session

from itilflow.engine import ChangeEngine, PrefectChangeEngine
from itilflow.gateway import (
    acceptance,
    access,
    alerts,
    api_docs,
    approvals,
    callbacks,
    change_templates,
    changes,
    directory,
    health,
    incidents,
    inspections,
    knowledge,
    metrics,
    oidc,
    oncall,
    proactive,
    problems,
    signin,
    surveys,
)
from itilflow.gateway.console import base as console_base
from itilflow.gateway.console import callbacks as console_callbacks
from itilflow.gateway.console import changes as console_changes
from itilflow.gateway.console import incidents as console_incidents
from itilflow.gateway.console import proactive as console_proactive
from itilflow.gateway.console import problems as console_problems
from itilflow.gateway.console import queues as console_queues
from itilflow.gateway.deps import Gateway
from itilflow.gateway.writer import GroupWriter
from itilflow.models import get_engine
from itilflow.models.migrations import check_database
from itilflow.policies import Policies, load_policies
from itilflow.runtime import Runtime
from itilflow.services.alerts import AlertIn, AlertResult, apply_alert_groups
from itilflow.services.incidents import Opened, OpenRequest, open_requested_incidents
from itilflow.settings import Settings

# In the order of the OpenAPI document: health, incidents, alerts, then the other processes.
ROUTERS = (
    health.router,
    metrics.router,
    incidents.router,
    alerts.router,
    surveys.router,
    callbacks.router,
    changes.router,
    change_templates.router,
    approvals.router,
    acceptance.router,
    problems.router,
    knowledge.router,
    inspections.router,
    proactive.router,
    directory.router,
    oncall.router,
    signin.router,
    oidc.router,
    console_queues.router,
    console_incidents.router,
    console_callbacks.router,
    console_changes.router,
    console_problems.router,
    console_proactive.router,
    api_docs.router,
)
# Seconds per SMTP operation for an approval code's mail: the approver is waiting on the page.
CODE_MAIL_TIMEOUT = 5.0
# Alerts (or JSON incidents) per transaction at most when many requests wait: keeps each
# commit, and so the wait of the requests behind it, short.
MAX_PER_TRANSACTION = 2000


class BodyTooLarge(Exception):
    pass


def _limit_body(app: Any, max_bytes: int) -> Callable[..., Awaitable[None]]:
    """Refuse bodies over `max_bytes` with 413 before they are read into memory."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _too_large(send, max_bytes)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await app(scope, counting_receive, send)
        except BodyTooLarge:
            await _too_large(send, max_bytes)

    return middleware


async def _too_large(send: Any, max_bytes: int) -> None:
    body = JSONResponse(
        {"detail": f"request body is larger than {max_bytes} bytes"},
        status_code=status.HTTP_413_CONTENT_TOO_LARGE,
    )
    await send(
        {"type": "http.response.start", "status": body.status_code, "headers": body.raw_headers}
    )
    await send({"type": "http.response.body", "body": body.body})


def create_app(
    settings: Settings,
    policies: Policies | None = None,
    change_engine: ChangeEngine | None = None,
) -> Any:
    """The gateway on `settings`' database: one `Gateway` (gateway/deps.py) and the routers."""
    gateway = _build_gateway(settings, policies, change_engine)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_objects()
        yield
        # Whatever is queued is written (and answered) before the process goes.
        await anyio.to_thread.run_sync(gateway.alert_writer.close)
        await anyio.to_thread.run_sync(gateway.incident_writer.close)

    app = FastAPI(
        lifespan=lifespan,
        title=api_docs.TITLE,
        # /docs and /redoc are api_docs' pages, with their assets served here (no CDN).
        docs_url=None,
        redoc_url=None,
        version="0.1.0",
        description=(
            "Open and work incidents, receive Prometheus Alertmanager webhooks. Every route but "
            "the probes under `/health` and the survey pages (which carry a signed token) needs "
            "`Authorization: Bearer <token>`: a person's or an integration's own token "
            "(`itilflow token create`), whose roles decide what it may do (403 otherwise)."
        ),
    )
    app.state.gateway = gateway
    app.state.readiness = health.Readiness(settings, gateway.engine)
    app.state.metrics = metrics.metrics_registry(gateway.engine)
    for router in ROUTERS:
        _add_routes(app, router)
    console_base.mount_static(app)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    # Outermost: it counts and logs every answer, the body limit's 413 included.
    app.add_middleware(access.AccessLog, enabled=settings.access_log)
    return app


def _build_gateway(
    settings: Settings, policies: Policies | None, change_engine: ChangeEngine | None
) -> Gateway:
    settings.require_secrets()
    assert settings.api_token is not None and settings.database_url is not None
    assert settings.secret_key is not None
    policies = policies or load_policies(settings.policy_dir, stack_urls=settings.stack_urls())
    engine = get_engine(settings.database_url)
    check_database(engine)  # refuses a schema older or newer than the code's

    def store_alert_groups(
        session: Session, groups: Sequence[list[AlertIn]]
    ) -> list[list[AlertResult]]:
        return apply_alert_groups(session, groups, policies=policies)

    def store_incident_requests(session: Session, requests: Sequence[OpenRequest]) -> list[Opened]:
        return open_requested_incidents(session=session, requests=requests, policies=policies)

    return Gateway(
        settings=settings,
        policies=policies,
        engine=engine,
        token=settings.api_token.get_secret_value(),
        secret=settings.secret_key.get_secret_value(),
        change_engine=change_engine or PrefectChangeEngine(),
        alert_writer=GroupWriter(
            engine,
            store_alert_groups,
            name="alertmanager",
            size_of=len,
            max_group=MAX_PER_TRANSACTION,
        ),
        incident_writer=GroupWriter(
            engine, store_incident_requests, name="incidents", max_group=MAX_PER_TRANSACTION
        ),
        code_mail=Runtime(settings).mail.model_copy(
            update={"timeout": min(settings.smtp_timeout, CODE_MAIL_TIMEOUT)}
        ),
    )


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes as the app's own. FastAPI (0.150) keeps an included router as one
    entry that it walks on every request: ~100 more calls per request on the intake's path
    (bench/intake.py). A router here has no dependencies, callbacks or hooks of its own: its
    routes already carry their full path and tags."""
    assert not router.dependencies and not router.on_startup and not router.on_shutdown
    app.router.routes.extend(router.routes)


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Move what the imports and the app built (Prefect, SQLAlchemy, pydantic: most of the
    heap) out of the collector's sight. A full collection then takes ~1 ms instead of 70-110 ms,
    which stalled every request in flight and set the intake's p99 (bench/intake.py)."""
    global _startup_frozen
    if not _startup_frozen:
        _startup_frozen = True
        gc.collect()
        gc.freeze()


class _BodyLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self._middleware = _limit_body(app, max_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._middleware(scope, receive, send)
