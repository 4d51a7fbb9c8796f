"""The gateway's probes, without a token.

- `/health/live`: the process answers (the event loop turns); nothing is read, so it answers
  within milliseconds while every database call waits on a lock. A restart is the cure for a
  failing liveness probe, so it must not fail for what a restart does not fix.
- `/health`: the same answer, kept for the health checks and scripts that know it.
- `/health/ready`: the gateway can do its work: the database answers and is at the code's
  migration head, and the Prefect server answers its /api/health with the stack's credentials.
  503 with what failed. Each check has READY_TIMEOUT seconds; a database check still running
  from an earlier probe is waited on, not started again, so probes never pile up threads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from itilflow.models.migrations import SchemaVersionError, check_database
from itilflow.settings import Settings

router = APIRouter(tags=["health"])
log = logging.getLogger("itilflow.gateway.health")

# Seconds each readiness check may take before it counts as failed.
READY_TIMEOUT = 3.0


class Readiness:
    """The readiness checks of one gateway: its database and the Prefect server."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        # An engine of its own, without a pool: the probe reads the schema's revision without
        # queueing behind the gateway's writers (on SQLite, the gateway's engine begins every
        # transaction IMMEDIATE, models/db.py), and never holds one of their connections.
        self._engine = side_engine(engine)
        self._database_check: asyncio.Future[str | None] | None = None
        # What the log said last: a probe every few seconds logs a change, not each answer.
        self.reported: dict[str, str] = {}

    async def problems(self) -> dict[str, str]:
        """What fails, by check ("database", "prefect"); empty when the gateway is ready."""
        found = dict(
            zip(
                ("database", "prefect"),
                await asyncio.gather(self._database(), self._prefect()),
                strict=True,
            )
        )
        return {name: problem for name, problem in found.items() if problem}

    async def _database(self) -> str | None:
        pending = self._database_check
        if (
            pending is None
            or pending.done()
            or pending.get_loop() is not asyncio.get_running_loop()
        ):
            self._database_check = asyncio.ensure_future(
                anyio.to_thread.run_sync(self._database_problem)
            )
        try:
            return await asyncio.wait_for(asyncio.shield(self._database_check), READY_TIMEOUT)
        except TimeoutError:
            return f"no answer within {READY_TIMEOUT:g} s"

    def _database_problem(self) -> str | None:
        try:
            check_database(self._engine)
        except SchemaVersionError as exc:
            return str(exc)
        except SQLAlchemyError as exc:
            return f"unreachable: {_first_line(exc)}"
        return None

    async def _prefect(self) -> str | None:
        url = f"{self.settings.local_prefect_api_url.rstrip('/')}/health"
        try:
            async with httpx.AsyncClient(
                timeout=READY_TIMEOUT, auth=self.settings.prefect_basic_auth, trust_env=False
            ) as client:
                answer = await client.get(url)
        except httpx.HTTPError as exc:
            return f"{url} does not answer: {_first_line(exc) or type(exc).__name__}"
        if answer.status_code != 200:
            return f"{url} answered {answer.status_code}"
        return None


def side_engine(engine: Engine) -> Engine:
    """An engine on `engine`'s database without a pool and with READY_TIMEOUT to connect: for
    reads beside the gateway's writers (the probe, the metrics' counts)."""
    return create_engine(engine.url, poolclass=NullPool, **_connect_args(engine))


def _connect_args(engine: Engine) -> dict[str, Any]:
    if engine.dialect.name == "sqlite":
        return {"connect_args": {"timeout": READY_TIMEOUT, "check_same_thread": False}}
    if engine.dialect.name == "postgresql":
        return {"connect_args": {"connect_timeout": int(READY_TIMEOUT)}}
    return {}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


@router.get("/health", operation_id="health")  # the first path, kept: an alias of live
@router.get("/health/live", operation_id="live")
async def live() -> dict[str, str]:
    """Answers from memory: an `async def`, so it needs no worker thread either."""
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={503: {"description": "not ready: `problems` says what failed, by check"}},
)
async def ready(request: Request) -> JSONResponse:
    readiness: Readiness = request.app.state.readiness
    problems = await readiness.problems()
    if problems != readiness.reported:
        readiness.reported = problems
        if problems:
            log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in problems.items()))
        else:
            log.warning("ready again")
    if problems:
        return JSONResponse(
            {"status": "unavailable", "problems": problems},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return JSONResponse({"status": "ok", "checks": ["database", "prefect"]})
