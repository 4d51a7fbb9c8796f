"""`/metrics`: the gateway's counters (itilflow/metrics.py GATEWAY) and the figures read from
the database at scrape time: open incidents by priority and status, due triggers and the oldest
one's age per lane and flow, changes by status, the latest inspection run of each group.

Why the gateway exports the database's figures, and not the runner: the runner's lag must be
seen while the runner is stuck or gone, so whoever reports it must not be the runner
(docs/observability.md). The counts are four grouped queries in one read transaction on an
engine of their own (never one of the writers' connections), kept CACHE_SECONDS: a scrape every
few seconds, or several Prometheus servers, cost the database one read per CACHE_SECONDS.

Who may read it: a client on loopback without forwarding headers (a Prometheus on this host),
or a bearer token: ITILFLOW_METRICS_TOKEN (scrape-only) or a principal holding the role admin.
The figures are counts, never records, but they still tell an outsider how busy and how late the
service is.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.gateway.deps import authenticate, gateway_of
from itilflow.gateway.health import side_engine
from itilflow.metrics import GATEWAY
from itilflow.models import OPEN_STATUSES, Change, FlowTrigger, Incident, InspectionRun

router = APIRouter(tags=["health"])
log = logging.getLogger("itilflow.gateway.metrics")

CACHE_SECONDS = 5.0
# The runner's urgent lane takes triggers of this rank or more urgent (dispatch/runner.py
# URGENT_RANK; the gateway may not import the runner, a test keeps the two equal).
URGENT_RANK = 2
# The runner's flows (dispatch/runner.py LANES): every other kind of trigger runs as "timers".
FLOWS = ("open", "resolved", "notify", "callback")
# Headers a proxy adds: a request that carries one came from elsewhere, whatever its address.
FORWARDED = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


class DatabaseFigures(Collector):
    """The database's figures as metric families, read at most once per CACHE_SECONDS."""

    def __init__(self, engine: Engine, ttl: float = CACHE_SECONDS) -> None:
        self._engine = side_engine(engine)
        self._ttl = ttl
        self._lock = threading.Lock()  # one read at a time; the others take its result
        self._read_at = -ttl
        self._families: list[Metric] = []
        self._failing = False

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._ttl:
                self._families = self._read()
                self._read_at = time.monotonic()
            families = self._families
        yield from families

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily(
            "itilflow_database_metrics_up",
            "1 when the gateway could read its figures from the database at the last scrape",
        )
        try:
            with Session(self._engine) as session:
                families = read_figures(session, clock.now())
        except SQLAlchemyError as exc:
            if not self._failing:
                log.warning("metrics: could not read the database: %s", exc)
            self._failing = True
            up.add_metric([], 0)
            return [up]
        if self._failing:
            log.warning("metrics: the database answers again")
        self._failing = False
        up.add_metric([], 1)
        return [up, *families]


def read_figures(session: Session, now: datetime) -> list[Metric]:
    return [
        _open_incidents(session),
        *_due_triggers(session, now),
        _changes(session),
        *_inspections(session),
    ]


def _open_incidents(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "itilflow_incidents_open",
        "Open incidents by priority and status",
        labels=["priority", "status"],
    )
    rows = session.exec(
        select(Incident.priority, Incident.status, func.count())
        .where(col(Incident.status).in_(OPEN_STATUSES))
        .group_by(Incident.priority, Incident.status)
    )
    for priority, incident_status, count in rows:
        family.add_metric([priority or "none", str(incident_status)], count)
    return family


def _due_triggers(session: Session, now: datetime) -> list[Metric]:
    """Due triggers not yet done (claimed ones included: they are not done either), by the
    runner's lane (urgent, normal) and flow; the lag is the oldest one's age."""
    pending = GaugeMetricFamily(
        "itilflow_triggers_due",
        "Triggers due and not done, by the runner's lane and flow (notify: redeliveries)",
        labels=["lane", "flow"],
    )
    lag = GaugeMetricFamily(
        "itilflow_trigger_lag_seconds",
        "Age of the oldest due trigger not done, by lane and flow (0: none due)",
        labels=["lane", "flow"],
    )
    rows = session.exec(
        select(
            FlowTrigger.priority_rank, FlowTrigger.kind, func.count(), func.min(FlowTrigger.due_at)
        )
        .where(
            col(FlowTrigger.done_at).is_(None),
            col(FlowTrigger.cancelled_at).is_(None),
            col(FlowTrigger.due_at) <= now,
        )
        .group_by(FlowTrigger.priority_rank, FlowTrigger.kind)
    )
    counts: dict[tuple[str, str], int] = {}
    oldest: dict[tuple[str, str], datetime] = {}
    for rank, kind, count, due_at in rows:
        key = ("urgent" if rank <= URGENT_RANK else "normal", kind if kind in FLOWS else "timers")
        counts[key] = counts.get(key, 0) + count
        oldest[key] = min(oldest.get(key, due_at), due_at)
    for lane in ("urgent", "normal"):
        for flow in (*FLOWS, "timers"):
            key = (lane, flow)
            pending.add_metric([lane, flow], counts.get(key, 0))
            age = (now - oldest[key]).total_seconds() if key in oldest else 0.0
            lag.add_metric([lane, flow], max(age, 0.0))
    return [pending, lag]


def _changes(session: Session) -> Metric:
    family = GaugeMetricFamily(
        "itilflow_changes", "Changes by status (final ones: their outcome)", labels=["status"]
    )
    rows = session.exec(select(Change.status, func.count()).group_by(Change.status))
    for change_status, count in rows:
        family.add_metric([str(change_status)], count)
    return family


def _inspections(session: Session) -> list[Metric]:
    checks = GaugeMetricFamily(
        "itilflow_inspection_checks",
        "Results of the latest run of each inspection group, by status",
        labels=["group", "status"],
    )
    started = GaugeMetricFamily(
        "itilflow_inspection_last_run_timestamp_seconds",
        "When the latest run of each inspection group started (Unix time)",
        labels=["group"],
    )
    latest = select(func.max(InspectionRun.id)).group_by(InspectionRun.group)
    runs = session.exec(select(InspectionRun).where(col(InspectionRun.id).in_(latest)))
    for run in runs:
        for result in ("ok", "warning", "critical", "error"):
            checks.add_metric([run.group, result], getattr(run, result))
        started.add_metric([run.group], run.started_at.timestamp())
    return [checks, started]


class _Forward(Collector):
    """Another registry's metrics, inside this one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def metrics_registry(engine: Engine) -> CollectorRegistry:
    """One gateway's registry: the process's counters and its database's figures."""
    registry = CollectorRegistry()
    registry.register(_Forward(GATEWAY))
    registry.register(DatabaseFigures(engine))
    return registry


def from_loopback(request: Request) -> bool:
    """A client on this host that no proxy forwarded."""
    if any(name in FORWARDED for name, _ in request.scope.get("headers") or ()):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def check_reader(request: Request, authorization: str | None) -> None:
    """Loopback, the metrics token, or an admin's token; else 401 (no token) or 403."""
    if from_loopback(request):
        return
    settings = gateway_of(request).settings
    scheme, _, given = (authorization or "").partition(" ")
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
        return
    principal = await authenticate(request, authorization)  # 401 when unknown
    if not principal.has("admin"):
        log.warning(
            "refused /metrics to %s %r: needs the role admin", principal.kind, principal.name
        )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "/metrics needs the metrics token or the role admin, or a client on loopback",
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "not on loopback and no token"},
        403: {"description": "a token that is neither the metrics token nor an admin's"},
    },
)
async def metrics(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus metrics of the gateway and of the database (docs/observability.md)."""
    await check_reader(request, authorization)
    registry: CollectorRegistry = request.app.state.metrics
    body = await anyio.to_thread.run_sync(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
