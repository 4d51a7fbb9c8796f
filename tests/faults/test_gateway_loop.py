"""The gateway's event loop never blocks, served as `itilflow gateway` serves it
(gateway/server.py's uvicorn configuration, on a free port, in a thread).

- A write waits on the database's lock (SQLite: a raw connection holding BEGIN EXCLUSIVE, as a
  backup or a sqlite shell does; PostgreSQL: a transaction holding the change table's lock):
  meanwhile /health/live answers within 100 ms. Before, the waiting `async def` route held the
  loop and every probe sent meanwhile was answered when the lock went (6.06 s for 6 s).
- Thousands of connections that never finish their headers: /health/live still answers, the
  gateway closes them after its header timeout, and logs that in a line, not one per connection.
"""

from __future__ import annotations

import logging
import resource
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from itilflow.gateway.app import create_app
from itilflow.gateway.health import READY_TIMEOUT
from itilflow.gateway.server import (
    MAX_HEADERS,
    RESERVED_FILES,
    GuardedHttpToolsProtocol,
    guarded_protocol,
    server_config,
)
from tests.support.principals import bearer_of, token_for
from tests.support.smtp import free_port

from .gateway_support import PLAN, RecordingChangeEngine

pytestmark = pytest.mark.postgres

LOCK_HELD_SECONDS = 3.0
PROBES = 15
LIVE_WITHIN = 0.100
IDLE_CONNECTIONS = 3000
MAX_CONNECTIONS = 1000
HEADER_TIMEOUT = 2.0


@contextmanager
def served(rt: Any, parser: str | None = None, **settings: Any) -> Iterator[str]:
    """The gateway with its production uvicorn configuration on a free loopback port (or its
    guard on another HTTP `parser`)."""
    configured = rt.settings.model_copy(update=settings)
    app = create_app(configured, rt.policies, change_engine=RecordingChangeEngine())
    overrides: dict[str, Any] = {"host": "127.0.0.1", "port": free_port()}
    if parser is not None:
        limit = configured.gateway_max_connections
        overrides["http"] = guarded_protocol(configured.gateway_header_timeout, limit, parser)
    server = uvicorn.Server(server_config(app, configured, **overrides))
    thread = threading.Thread(target=server.run, name="gateway-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.config.port}"
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def write_lock_held(database_url: str) -> Iterator[None]:
    """Hold the database's write lock (on PostgreSQL: the change table's) until the block ends."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as holder:
        holder.execute('LOCK TABLE "change" IN ACCESS EXCLUSIVE MODE')
        yield
        holder.rollback()


def live_times(url: str, count: int) -> list[float]:
    """Seconds each of `count` GET /health/live took, each on a new connection."""
    took = []
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, timeout=10, trust_env=False, limits=fresh) as probe:
        for _ in range(count):
            started = time.monotonic()
            answer = probe.get("/health/live")
            took.append(time.monotonic() - started)
            assert answer.status_code == 200
    return took


def test_live_answers_while_a_change_waits_on_the_database_lock(
    rt: Any, fault_figures: Any
) -> None:
    headers = bearer_of(token_for(rt.engine, "chen", ["reporter"]))
    with served(rt) as url, httpx.Client(base_url=url, headers=headers, trust_env=False) as api:
        assert api.get("/api/change-templates").status_code == 200  # the token is remembered
        answered: dict[str, Any] = {}

        def submit() -> None:
            started = time.monotonic()
            response = api.post(
                "/api/changes", json={"title": "Waits on the lock", "plan": PLAN}, timeout=60
            )
            answered.update(status=response.status_code, seconds=time.monotonic() - started)

        with write_lock_held(rt.settings.database_url):
            submitting = threading.Thread(target=submit)
            submitting.start()
            time.sleep(0.3)  # the change's transaction is waiting now
            took = live_times(url, PROBES)
            asked = time.monotonic()
            readiness = httpx.get(f"{url}/health/ready", timeout=10, trust_env=False).json()
            ready_seconds = time.monotonic() - asked
            still_waiting = submitting.is_alive()
            time.sleep(max(0.0, LOCK_HELD_SECONDS - 0.3 - sum(took)))
        submitting.join(timeout=60)
    median = statistics.median(took)
    fault_figures(
        f"write lock held {LOCK_HELD_SECONDS:g} s during POST /api/changes",
        live_median_ms=round(median * 1000, 1),
        live_max_ms=round(max(took) * 1000, 1),
        ready_ms=round(ready_seconds * 1000),
        change_status=answered.get("status"),
        change_seconds=round(answered.get("seconds", -1), 2),
    )
    assert still_waiting, "the change did not wait on the lock: the test proves nothing"
    assert answered.get("status") == 201, answered
    assert answered["seconds"] >= LOCK_HELD_SECONDS - 0.5
    assert median < LIVE_WITHIN, took
    assert max(took) < 1.0, took
    # Readiness reads the schema's revision beside the lock (no Prefect server runs here).
    assert "database" not in readiness.get("problems", {}), readiness
    assert ready_seconds < READY_TIMEOUT + 1.0


def open_unfinished(url: str, count: int) -> list[socket.socket]:
    """`count` connections that send a request line and a header, and never the blank line."""
    port = int(url.rsplit(":", 1)[1])
    held = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n")
        held.append(conn)
    return held


def closed_by_server(conn: socket.socket) -> bool:
    conn.settimeout(0.5)
    try:
        return conn.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_connections_that_never_finish_their_headers(
    rt: Any, fault_figures: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # Both ends of every connection are files of this process: fewer on a host with a low limit.
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    count = min(IDLE_CONNECTIONS, (files - RESERVED_FILES * 2) // 2)
    limit = min(MAX_CONNECTIONS, count // 3)
    with served(rt, gateway_max_connections=limit, gateway_header_timeout=HEADER_TIMEOUT) as url:
        started = time.monotonic()
        held = open_unfinished(url, count)
        opening = time.monotonic() - started
        try:
            took = live_times(url, PROBES)
            time.sleep(HEADER_TIMEOUT + 1.0)
            closed = sum(closed_by_server(conn) for conn in held)
            after = live_times(url, 3)
        finally:
            for conn in held:
                conn.close()
    gateway_lines = [r for r in caplog.records if r.name.startswith(("itilflow", "uvicorn"))]
    median = statistics.median(took)
    fault_figures(
        f"{count} connections without their headers (limit {limit})",
        opened_in_s=round(opening, 1),
        live_median_ms=round(median * 1000, 1),
        live_max_ms=round(max(took) * 1000, 1),
        closed_by_gateway=closed,
        log_lines=len(gateway_lines),
    )
    assert median < LIVE_WITHIN, took
    assert max(after) < 1.0, after
    assert closed == count, f"{count - closed} connections left open"
    assert len(gateway_lines) <= 3, [r.getMessage() for r in gateway_lines]


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_a_kept_alive_connection_owes_its_next_headers_in_time_too(rt: Any, parser: str) -> None:
    """After a response the connection waits for its next request: half of one is not a way
    around the header timeout (uvicorn's keep-alive timer stops at the first byte). The same
    with h11, the guard's other parser."""
    timeouts = {"gateway_header_timeout": 1.0, "gateway_keep_alive_timeout": 30}
    with served(rt, parser, **timeouts) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
            first = b""
            while not first.endswith(b'{"status":"ok"}'):  # the head and body may come apart
                chunk = conn.recv(4096)
                assert chunk, first
                first += chunk
            assert first.startswith(b"HTTP/1.1 200")
            conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: gat")
            started = time.monotonic()
            conn.settimeout(5)
            assert conn.recv(4096) == b"", "the gateway answered a request it never finished"
            waited = time.monotonic() - started
    assert 0.5 < waited < 3.0, waited


def test_the_gateway_is_served_on_uvloop_and_httptools(rt: Any) -> None:
    """Issue 13 item 8: this process alone; the Prefect server keeps asyncio and h11
    (itilflow/prefect_server.py, tests/test_service_commands.py)."""
    config = server_config(create_app(rt.settings, rt.policies), rt.settings)
    assert config.loop == "uvloop"
    assert isinstance(config.http, type) and issubclass(config.http, GuardedHttpToolsProtocol)


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_unfinished_headers_past_16_kib_are_refused(rt: Any, parser: str) -> None:
    """A client may not pile up headers until the timeout: past 16 KiB without their end the
    request is refused and the connection closed. h11 does it itself; httptools has no limit, so
    the guard counts what comes before the headers end. Just under the limit is served."""
    with served(rt, parser) as url:
        port = int(url.rsplit(":", 1)[1])
        filler = "x" * 1000
        under = "".join(f"X-Pad-{n}: {filler}\r\n" for n in range(MAX_HEADERS // 1100)) + "\r\n"
        over = "".join(f"X-Pad-{n}: {filler}\r\n" for n in range(MAX_HEADERS // 1000 + 2))
        for headers, served_ok in ((under, True), (over, False)):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(f"GET /health/live HTTP/1.1\r\nHost: gateway\r\n{headers}".encode())
                answer = b""
                while chunk := conn.recv(65536):
                    answer += chunk
                    if served_ok and answer.endswith(b'{"status":"ok"}'):
                        break
            expected = b"HTTP/1.1 200" if served_ok else b"HTTP/1.1 400"
            assert answer.startswith(expected), answer[:200]
