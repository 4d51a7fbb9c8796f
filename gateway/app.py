"""The HTTP gateway: intake, Alertmanager's webhook, incident actions and survey pages.

Every write is committed before the response; the engine is never waited on. The runner picks
up the stored triggers and starts the flows.
"""

import gc
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from itilflow import clock
from itilflow.engine import ChangeEngine, PrefectChangeEngine
from itilflow.gateway import changes, directory, inspections, problems, surveys
from itilflow.gateway.schemas import (
    MAX_OFFSET,
    Action,
    ActionIn,
    AlertmanagerResult,
    IncidentIn,
    IncidentOut,
    IncidentRef,
    SlaOut,
    TimelineOut,
)
from itilflow.gateway.writer import GroupWriter
from itilflow.models import (
    Incident,
    get_engine,
    get_timeline,
    incident_number,
    list_incidents,
    parse_incident_ref,
)
from itilflow.models.migrations import check_database
from itilflow.policies import Policies, compute_sla, load_policies
from itilflow.services import incidents
from itilflow.services.alerts import (
    AlertIn,
    AlertmanagerWebhook,
    AlertResult,
    apply_alert_groups,
    outcomes_of,
)
from itilflow.settings import Settings

API_PREFIX = "/api"
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
    settings.require_secrets()
    assert settings.api_token is not None and settings.database_url is not None
    token = settings.api_token.get_secret_value()
    policies = policies or load_policies(settings.policy_dir, stack_urls=settings.stack_urls())
    engine = get_engine(settings.database_url)
    check_database(engine)  # refuses a schema older or newer than the code's

    def store_alert_groups(
        session: Session, groups: Sequence[list[AlertIn]]
    ) -> list[list[AlertResult]]:
        return apply_alert_groups(session, groups, policies=policies)

    alert_writer: GroupWriter[list[AlertIn], list[AlertResult]] = GroupWriter(
        engine,
        store_alert_groups,
        name="alertmanager",
        size_of=len,
        max_group=MAX_PER_TRANSACTION,
    )

    def store_incident_requests(
        session: Session, requests: Sequence[incidents.OpenRequest]
    ) -> list[incidents.Opened]:
        return incidents.open_requested_incidents(
            session=session, requests=requests, policies=policies
        )

    incident_writer: GroupWriter[incidents.OpenRequest, incidents.Opened] = GroupWriter(
        engine, store_incident_requests, name="incidents", max_group=MAX_PER_TRANSACTION
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_objects()
        yield
        # Whatever is queued is written (and answered) before the process goes.
        await anyio.to_thread.run_sync(alert_writer.close)
        await anyio.to_thread.run_sync(incident_writer.close)

    app = FastAPI(
        lifespan=lifespan,
        title="itilflow gateway",
        version="0.1.0",
        description=(
            "Open and work incidents, receive Prometheus Alertmanager webhooks. Every route but "
            "`/health` and the survey pages (which carry a signed token) needs "
            "`Authorization: Bearer <ITILFLOW_API_TOKEN>`."
        ),
    )
    app.state.settings = settings
    app.state.policies = policies

    def get_session() -> Iterator[Session]:
        with Session(engine, expire_on_commit=False) as session:
            yield session

    async def authorize(authorization: Annotated[str | None, Header()] = None) -> str:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return "api"

    SessionDep = Annotated[Session, Depends(get_session)]
    Client = Annotated[str, Depends(authorize)]

    def url_of(incident_id: int) -> str:
        return f"{settings.public_url}{API_PREFIX}/incidents/{incident_id}"

    def load(session: Session, ref: str) -> Incident:
        try:
            return incidents.load_incident(session, parse_incident_ref(ref))
        except ValueError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        except incidents.NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ref} not found") from exc

    def out(incident: Incident) -> IncidentOut:
        assert incident.id is not None
        return IncidentOut(
            id=incident.id,
            number=incident.number,
            url=url_of(incident.id),
            title=incident.title,
            description=incident.description,
            status=incident.status.value,
            priority=incident.priority,
            category=incident.category,
            ci=incident.ci_name,
            impact=incident.impact,
            urgency=incident.urgency,
            group=incident.group_name,
            assignee=incident.assignee,
            source=incident.source,
            reporter_email=incident.reporter_email,
            fingerprint=incident.fingerprint,
            parent_id=incident.parent_id,
            survey_score=incident.survey_score,
            opened_at=incident.opened_at,
            updated_at=incident.updated_at,
            resolved_at=incident.resolved_at,
            closed_at=incident.closed_at,
        )

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        f"{API_PREFIX}/incidents",
        response_model=IncidentRef,
        status_code=status.HTTP_201_CREATED,
        tags=["incidents"],
        responses={
            200: {"description": "an incident with this Idempotency-Key already exists"},
            503: {"description": "nothing was stored (database unavailable): resend"},
        },
    )
    async def create_incident(
        body: IncidentIn,
        client: Client,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        new = incidents.NewIncident(
            title=body.title,
            description=body.description,
            category=body.category,
            ci_name=body.ci,
            impact=body.impact,
            urgency=body.urgency,
            priority=body.priority,
            reporter_name=body.reporter_name,
            reporter_email=body.reporter_email,
            labels=body.labels,
            source="api",
        )
        try:
            # Refused here, before the writer: nothing of it reaches a transaction.
            incidents.validate_new_incident(new, policies)
        except incidents.InvalidIncident as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
        dedup_key = f"api:{idempotency_key}" if idempotency_key else None
        try:
            opened = await incident_writer.awrite(
                incidents.OpenRequest(new=new, actor=client, dedup_key=dedup_key)
            )
        except SQLAlchemyError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the incident could not be stored, nothing was: send it again",
                headers={"Retry-After": "5"},
            ) from exc
        ref = IncidentRef(
            id=opened.id,
            number=incident_number(opened.id),
            url=url_of(opened.id),
            status=opened.status,
            created=opened.created,
        )
        return JSONResponse(ref.model_dump(), status_code=201 if opened.created else 200)

    @app.get(f"{API_PREFIX}/incidents", response_model=list[IncidentOut], tags=["incidents"])
    def get_incidents(
        session: SessionDep,
        _: Client,
        status_filter: Annotated[str | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> list[IncidentOut]:
        rows = list_incidents(session=session, status=status_filter, limit=limit, offset=offset)
        return [out(incident) for incident in rows]

    @app.get(f"{API_PREFIX}/incidents/{{ref}}", response_model=IncidentOut, tags=["incidents"])
    def get_incident(ref: str, session: SessionDep, _: Client) -> IncidentOut:
        return out(load(session, ref))

    @app.get(
        f"{API_PREFIX}/incidents/{{ref}}/timeline",
        response_model=list[TimelineOut],
        tags=["incidents"],
    )
    def get_incident_timeline(ref: str, session: SessionDep, _: Client) -> list[TimelineOut]:
        incident = load(session, ref)
        assert incident.id is not None
        return [
            TimelineOut(
                at=entry.at,
                actor=entry.actor,
                kind=entry.kind,
                message=entry.message,
                data=entry.data,
            )
            for entry in get_timeline(session=session, incident_id=incident.id)
        ]

    @app.get(f"{API_PREFIX}/incidents/{{ref}}/sla", response_model=SlaOut, tags=["incidents"])
    def get_incident_sla(ref: str, session: SessionDep, _: Client) -> SlaOut:
        """SLA figures recomputed from the timeline under the policy in force."""
        incident = load(session, ref)
        assert incident.id is not None
        priority = incidents.classify(incident, policies)
        figures = compute_sla(
            incidents.status_events(session, incident.id), policies.sla, priority, clock.now()
        )

        def seconds(value: Any) -> float | None:
            return value.total_seconds() if value is not None else None

        return SlaOut(
            priority=priority,
            response_due=figures.response_due,
            resolution_due=figures.resolution_due,
            time_to_respond_seconds=seconds(figures.time_to_respond),
            time_to_resolve_seconds=seconds(figures.time_to_resolve),
            time_on_hold_seconds=figures.time_on_hold.total_seconds(),
            response_breached=figures.response_breached,
            resolution_breached=figures.resolution_breached,
            paused=figures.paused,
            policy=str(settings.policy_dir or "defaults"),
        )

    @app.post(
        f"{API_PREFIX}/incidents/{{ref}}/{{action}}",
        response_model=IncidentOut,
        tags=["incidents"],
        responses={409: {"description": "the incident's state does not allow this action"}},
    )
    def act_on_incident(
        ref: str, action: Action, body: ActionIn, session: SessionDep, client: Client
    ) -> IncidentOut:
        incident = load(session, ref)
        assert incident.id is not None
        try:
            incident = incidents.apply_action(
                session,
                incident.id,
                action,
                actor=body.actor or client,
                note=body.note,
                policies=policies,
            )
            session.commit()
        except incidents.ActionError as exc:
            session.rollback()
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
        return out(incident)

    @app.post(
        f"{API_PREFIX}/alertmanager",
        response_model=AlertmanagerResult,
        tags=["alerts"],
        summary="Prometheus Alertmanager webhook receiver (payload version 4)",
        responses={503: {"description": "nothing was stored (database unavailable): resend"}},
    )
    async def alertmanager_webhook(body: AlertmanagerWebhook, _: Client) -> AlertmanagerResult:
        # No worker thread and no session per request: the alerts go to the one writer thread,
        # which stores them with the webhooks that arrive meanwhile, in one transaction.
        try:
            results = await alert_writer.awrite(body.alerts)
        except SQLAlchemyError as exc:
            # Nothing of this webhook was stored; Alertmanager sends it again on a 5xx.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the alerts could not be stored, nothing was: send them again",
                headers={"Retry-After": "5"},
            ) from exc
        return AlertmanagerResult(alerts=outcomes_of(body.alerts, results, url_of))

    surveys.add_routes(app, engine=engine, settings=settings, policies=policies)
    changes.add_routes(
        app,
        engine=engine,
        settings=settings,
        policies=policies,
        authorize=authorize,
        change_engine=change_engine or PrefectChangeEngine(),
    )
    problems.add_routes(app, engine=engine, authorize=authorize)
    inspections.add_routes(app, engine=engine, authorize=authorize)
    directory.add_routes(app, engine=engine, authorize=authorize)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    return app


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
