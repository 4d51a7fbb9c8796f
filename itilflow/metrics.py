"""The Prometheus metrics itilflow's processes count in memory (prometheus_client).

Two registries, one per process that serves them (docs/observability.md):
- GATEWAY: what the gateway sees (requests, alerts), served on its `/metrics` together with the
  figures it reads from the database at scrape time (gateway/metrics.py);
- RUNNER: what the runner does (batches, incidents opened, SLA breaches, deliveries), served on
  the runner's own small endpoint (`serve_runner_metrics`). Deliveries and SLA timers run inside
  the runner's in-process flow runs, so their counters land here; a flow run on a Prefect worker
  (a change's approval mails) counts in the worker's process, which serves nothing: the
  database-derived figures (pending redeliveries, changes by status) cover those.

Counting is a dictionary lookup and an addition under a lock: nothing here touches the database,
so the intake's cost per request stays flat (bench/intake.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

log = logging.getLogger("itilflow.metrics")

GATEWAY = CollectorRegistry()
RUNNER = CollectorRegistry()
ProcessCollector(registry=GATEWAY)
ProcessCollector(registry=RUNNER)

# ------------------------------------------------------------------------------ the gateway

REQUESTS = Counter(
    "itilflow_gateway_requests",
    "HTTP requests answered by the gateway, by route template, method and outcome "
    "(accepted, or the reason of a refusal)",
    ["route", "method", "outcome"],
    registry=GATEWAY,
)
REQUEST_SECONDS = Histogram(
    "itilflow_gateway_request_duration_seconds",
    "Time from a request's arrival to the end of its response",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=GATEWAY,
)
ALERTS = Counter(
    "itilflow_alerts",
    "Alertmanager alerts received, by outcome: created, duplicate, resolved, annotated, "
    "ignored, or refused_unavailable (nothing stored: Alertmanager sends them again)",
    ["outcome"],
    registry=GATEWAY,
)

# HTTP status -> the outcome label of a request: every 2xx and 3xx is "accepted".
REFUSALS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "invalid",
    429: "too_many",
    503: "unavailable",
}


def outcome_of(status: int) -> str:
    """A request's outcome label: "accepted" or the refusal's reason."""
    if status < 400:
        return "accepted"
    return REFUSALS.get(status, "error" if status >= 500 else "refused")


# ------------------------------------------------------------------------------ the runner

RUNNER_POLL = Gauge(
    "itilflow_runner_last_poll_timestamp_seconds",
    "When the runner last looked for due triggers (Unix time): its heartbeat",
    registry=RUNNER,
)
BATCHES = Counter(
    "itilflow_runner_batches",
    "Flow runs the runner started for batches of triggers, by flow, lane and outcome "
    "(completed, failed: the run failed, engine_error: the engine could not run it)",
    ["flow", "lane", "outcome"],
    registry=RUNNER,
)
TRIGGERS = Counter(
    "itilflow_runner_triggers",
    "Triggers the runner settled, by flow and outcome (completed, or failed: kept for a retry)",
    ["flow", "outcome"],
    registry=RUNNER,
)
INCIDENTS_OPENED = Counter(
    "itilflow_incidents_opened",
    "Incidents whose opening flow completed (classified, assigned, notified), by priority",
    ["priority"],
    registry=RUNNER,
)
SLA_BREACHES = Counter(
    "itilflow_sla_breaches",
    "SLA breaches recorded on incidents' timelines, by target (response, resolution) and priority",
    ["sla", "priority"],
    registry=RUNNER,
)
NOTIFICATIONS = Counter(
    "itilflow_notifications",
    "Messages sent by channel (email, chat) and outcome (delivered, failed: the engine retries it, "
    "then keeps it for redelivery)",
    ["channel", "outcome"],
    registry=RUNNER,
)
NOTIFICATIONS_KEPT = Counter(
    "itilflow_notifications_kept",
    "Notifications the engine's retries could not deliver, kept for redelivery by the runner",
    registry=RUNNER,
)


def priority_label(rank: int) -> str:
    """A trigger's priority rank as a label: 1 -> "P1" ... 4 -> "P4", anything else "none"."""
    return f"P{rank}" if 1 <= rank <= 4 else "none"


def note_batch(flow: str, lane: str, outcome: str, ranks: Sequence[int]) -> None:
    """A batch the runner settled: `outcome` is completed, failed or engine_error; `ranks` are
    its triggers' priority ranks (an "open" batch that completed opened those incidents)."""
    BATCHES.labels(flow, lane, outcome).inc()
    TRIGGERS.labels(flow, "completed" if outcome == "completed" else "failed").inc(len(ranks))
    if flow == "open" and outcome == "completed":
        for rank, count in Tally(ranks).items():
            INCIDENTS_OPENED.labels(priority_label(rank)).inc(count)


def note_deliveries(channels: Iterable[tuple[str, bool]]) -> None:
    """Messages sent: (channel, delivered) each."""
    for (channel, delivered), count in Tally(channels).items():
        NOTIFICATIONS.labels(channel, "delivered" if delivered else "failed").inc(count)


def serve_runner_metrics(host: str, port: int, retry_every: float = 30.0) -> WSGIServer | None:
    """The runner's `/metrics` on host:port in a daemon thread; None when port is 0 or taken.
    A runner never stops for its metrics: a taken port (an outgoing connection may hold it for
    a moment) is logged and tried again every `retry_every` seconds (0: not again)."""
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=RUNNER)
    except OSError as exc:
        again = f"; trying again every {retry_every:g} s" if retry_every else ""
        log.warning("runner metrics not served on %s:%d: %s%s", host, port, exc, again)
        if retry_every:
            threading.Thread(
                target=_serve_when_free,
                args=(host, port, retry_every),
                name="runner-metrics",
                daemon=True,
            ).start()
        return None
    log.info("runner metrics on http://%s:%d/metrics", host, port)
    return server


def _serve_when_free(host: str, port: int, retry_every: float) -> None:
    while True:
        time.sleep(retry_every)
        try:
            start_http_server(port, addr=host, registry=RUNNER)
        except OSError:
            continue
        log.warning("runner metrics on http://%s:%d/metrics after all", host, port)
        return
