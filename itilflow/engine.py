"""How the gateway and the change process start, cancel and resume change runs on the engine.

Deployment runs on the worker; resume and cancel go through the Prefect API. Its callers (the
gateway's change routes, the reminder task, the recovery flow) take it as a parameter where tests
need a stand-in.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

log = logging.getLogger("itilflow.engine")


class ChangeEngine(Protocol):
    """How the gateway starts, cancels and resumes change runs on the engine."""

    async def start(self, change_id: int) -> str | None: ...
    async def cancel(self, flow_run_id: str) -> None: ...
    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool: ...


class PrefectChangeEngine:
    """Deployment runs on the worker; resume and cancel through the Prefect API."""

    deployment = "change/manage-change"

    async def start(self, change_id: int) -> str | None:
        from prefect.deployments import run_deployment

        run = await run_deployment(self.deployment, parameters={"change_id": change_id}, timeout=0)
        return str(run.id)

    async def cancel(self, flow_run_id: str) -> None:
        from uuid import UUID

        from prefect import get_client
        from prefect.states import Cancelling

        async with get_client() as client:
            await client.set_flow_run_state(UUID(flow_run_id), Cancelling(), force=True)

    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool:
        """Resume the paused run; it may be between two pauses for a moment, so try again
        briefly. The decision is stored already: a run that is not paused reads it itself."""
        from uuid import UUID

        from prefect.exceptions import FlowPauseTimeout
        from prefect.flow_runs import NotPausedError, aresume_flow_run

        for _ in range(20):
            try:
                await aresume_flow_run(UUID(flow_run_id), run_input=run_input)
                return True
            except NotPausedError:
                await asyncio.sleep(0.5)
            except (FlowPauseTimeout, RuntimeError) as exc:
                log.warning("could not resume %s: %s", flow_run_id, exc)
                return False
        return False
