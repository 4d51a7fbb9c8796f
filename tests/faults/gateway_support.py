"""What the fault tests share about the gateway: its bearer header, one stored object of each
kind to aim requests at, a change engine that records what the gateway asked of it, and the
gateway served by uvicorn with every response's status kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi.testclient import TestClient

from itilflow.models import ChangeStatus, session_scope
from itilflow.services import changes, problems, surveys
from itilflow.services.changes import acceptance
from tests.support.smtp import free_port

# The smallest plan a change accepts: one step and its undo.
PLAN: dict[str, Any] = {
    "steps": [
        {
            "name": "noop",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}


def bearer(rt: Any) -> dict[str, str]:
    assert rt.settings.api_token is not None
    return {"Authorization": f"Bearer {rt.settings.api_token.get_secret_value()}"}


@dataclass
class RecordingChangeEngine:
    """The gateway's side of the change engine (itilflow.engine.ChangeEngine): these tests are
    about the gateway, so no change run is started; every call is kept to be checked."""

    started: list[int] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resumed: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def start(self, change_id: int) -> str | None:
        self.started.append(change_id)
        return None

    async def cancel(self, flow_run_id: str) -> None:
        self.cancelled.append(flow_run_id)

    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool:
        self.resumed.append((flow_run_id, run_input))
        return True


def seed_objects(client: TestClient, rt: Any) -> dict[str, dict[str, str]]:
    """An incident, a change awaiting chen's approval, one awaiting its requester's acceptance,
    a problem, and a survey, an approval and an acceptance link; returns the path parameters
    that name them, by the path prefix of their routes."""
    incident = client.post("/api/incidents", json={"title": "Seed incident", "impact": "low"})
    change = client.post("/api/changes", json={"title": "Seed change", "plan": PLAN})
    done = client.post("/api/changes", json={"title": "Seed change done", "plan": PLAN})
    assert incident.status_code == change.status_code == 201, (incident.text, change.text)
    with session_scope(rt.engine) as session:
        loaded = changes.load_change(session, change.json()["id"])
        loaded.status = ChangeStatus.awaiting_approval
        request = changes.create_approval_request(
            session=session,
            change=loaded,
            stage="technical-lead",
            approver="chen",
            policies=rt.policies,
        )
        approval = changes.approval_token(request, secret=rt.secret, policies=rt.policies)
        implemented = changes.load_change(session, done.json()["id"])
        signoff = acceptance.ask_for_acceptance(
            session=session, change=implemented, policies=rt.policies
        )
        accept = acceptance.acceptance_token(signoff, secret=rt.secret)
        problem, _ = problems.open_problem(
            session,
            problems.Cluster(
                kind="ci",
                value="seed-ci",
                count=3,
                first_at=loaded.created_at,
                last_at=loaded.created_at,
                incident_ids=[incident.json()["id"]],
                category=None,
                latest_title="Seed incident",
                min_incidents=3,
                window="7d",
            ),
            policies=rt.policies,
        )
    return {
        "/api/incidents/": {"ref": incident.json()["number"]},
        "/api/changes/": {"ref": change.json()["number"]},
        "/api/problems/": {"ref": problem.number},
        "/surveys/": {"token": surveys.survey_token(incident.json()["id"], secret=rt.secret)},
        "/approvals/": {"token": approval},
        "/acceptance/": {"token": accept},
    }


class StatusRecorder:
    """ASGI wrapper keeping the status and duration of every response, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                with self._lock:
                    self.statuses.setdefault(scope["path"], []).append(message["status"])
            await send(message)

        await self.app(scope, receive, noting_send)

    def of(self, path: str) -> list[int]:
        with self._lock:
            return list(self.statuses.get(path, []))


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app=app, host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="gateway-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    with httpx.Client(trust_env=False, timeout=2) as probe:
        while True:
            assert thread.is_alive(), "uvicorn stopped during startup (see the log above)"
            try:
                if probe.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the gateway did not answer /health in 15 s"
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
