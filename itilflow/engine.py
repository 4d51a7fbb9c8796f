"""How the gateway and the change process start and cancel change runs on the engine.

A change's run ends while the change waits for decisions (it is rows then, not a process): the
gateway starts the next run once a link's decision is stored. Deployment runs go to the worker;
cancel goes through the Prefect API. Its callers (the gateway's change and approval routes, the
reminder task, the recovery flow) take it as a parameter where tests need a stand-in.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("itilflow.engine")


class ChangeEngine(Protocol):
    """How the gateway starts and cancels change runs on the engine."""

    async def start(self, change_id: int) -> str | None: ...
    async def cancel(self, flow_run_id: str) -> None: ...


class PrefectChangeEngine:
    """Deployment runs on the worker; cancel through the Prefect API."""

    deployment = "change/manage-change"

    async def start(self, change_id: int) -> str | None:
        from prefect.deployments import run_deployment

        run = await run_deployment(self.deployment, parameters={"change_id": change_id}, timeout=0)
        return str(run.id)

    async def cancel(self, flow_run_id: str) -> None:
        """Cancel the run if it still runs: a change's last run has usually ended (it ends
        while the change waits), and a finished run is left as it ended."""
        from uuid import UUID

        from prefect import get_client
        from prefect.states import Cancelling

        async with get_client() as client:
            run = await client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return
            await client.set_flow_run_state(UUID(flow_run_id), Cancelling(), force=True)
