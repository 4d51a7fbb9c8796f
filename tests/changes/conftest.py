"""Change tests: the real flow runs in this process against the session's Prefect test server,
and the gateway is served by uvicorn on a loopback port for the browser."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from itilflow.engine import PrefectChangeEngine
from itilflow.flows.change import manage_change
from itilflow.gateway.app import create_app
from tests.support.smtp import free_port


class InProcessChangeEngine(PrefectChangeEngine):
    """Runs the change flow in a thread of this process instead of on a worker; resuming and
    cancelling go through the Prefect API as in production."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.results: dict[int, Any] = {}
        self.run_ids: dict[threading.Thread, str] = {}
        self.cancelled: set[str] = set()

    async def start(self, change_id: int) -> str | None:
        # Threads do not inherit context variables: carry the test server's settings over.
        context = contextvars.copy_context()
        started: list[threading.Thread] = []

        def running(flow: Any, flow_run: Any, state: Any) -> None:
            self.run_ids[started[0]] = str(flow_run.id)

        flow = manage_change.with_options(on_running=[running])

        def run() -> None:
            self.results[change_id] = context.run(asyncio.run, flow(change_id))

        thread = threading.Thread(target=run, name=f"change-{change_id}", daemon=True)
        started.append(thread)
        thread.start()
        self.threads.append(thread)
        return None

    async def cancel(self, flow_run_id: str) -> None:
        await super().cancel(flow_run_id)
        self.cancelled.add(flow_run_id)

    def join(self, thread: threading.Thread, timeout: float = 30.0) -> None:
        """Wait for a change's thread to end, but not for one whose run was cancelled: paused,
        it waits to be resumed until its pause times out (days), where on a worker the
        cancellation kills its process. Such a daemon thread is left behind, as a thread still
        running after `timeout` is."""
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            if self.run_ids.get(thread) in self.cancelled:
                return
            thread.join(timeout=0.2)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def change_engine() -> InProcessChangeEngine:
    return InProcessChangeEngine()


@pytest.fixture
def live_gateway(rt, prefect_server, change_engine) -> Iterator[httpx.Client]:
    port = free_port()
    rt.settings.public_url = f"http://127.0.0.1:{port}"
    app = create_app(rt.settings, rt.policies, change_engine=change_engine)
    server = uvicorn.Server(
        uvicorn.Config(app=app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert rt.settings.api_token is not None
    client = httpx.Client(
        base_url=rt.settings.public_url,
        trust_env=False,
        timeout=10,
        headers={"Authorization": f"Bearer {rt.settings.api_token.get_secret_value()}"},
    )

    def healthy() -> bool:
        try:
            return client.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    wait_for("the gateway", healthy, timeout=15)
    try:
        yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        client.close()
        for change_thread in change_engine.threads:
            change_engine.join(change_thread)
