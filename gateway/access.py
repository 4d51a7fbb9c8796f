"""The gateway's access log and request counters: one ASGI middleware, outermost, so that it sees
every answer (a 413 of the body limit, a 401 of the token check, a 500) and its full duration.

A line per request on logger `itilflow.gateway.access` (INFO): method, path, status, duration
and the principal when one was authenticated. Never a secret: no header is logged (so neither
the Authorization header nor cookies), a path parameter named like a secret (the survey's,
approval's and sign-in link's `token`) is logged by its name, a query keeps its keys but only
the values of keys known to be harmless, and a path no route matched has its long segments
(what a mistyped link's token would be) cut out.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import parse_qsl

from itilflow.metrics import REQUEST_SECONDS, REQUESTS, outcome_of

log = logging.getLogger("itilflow.gateway.access")

SECRET_PARAMS = frozenset({"token", "code", "key", "secret", "password", "signature"})
# Query keys whose values are logged; any other key's value is written as "…".
PLAIN_QUERY_KEYS = frozenset(
    {"limit", "offset", "status", "priority", "group", "assignee", "category", "period"}
)
# Probes and scrapes come every few seconds: when they succeed their lines are DEBUG, not INFO.
QUIET_ROUTES = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
# Segments of an unmatched path longer than this are cut: a token is longer, a word is not.
LONG_SEGMENT = 24
HIDDEN = "…"


class AccessLog:
    """Counts each request (route template, method, outcome) and logs it when `enabled`."""

    def __init__(self, app: Any, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = 500  # what the client gets when the app raises before it answers

        async def noting_send(message: dict[str, Any]) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_send)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(template, scope["method"], outcome_of(answered)).inc()
            REQUEST_SECONDS.observe(seconds)
            level = _level_of(template, answered)
            if self.enabled and log.isEnabledFor(level):
                _log_request(scope, template, answered, seconds, level)


def _level_of(template: str, answered: int) -> int:
    return logging.DEBUG if template in QUIET_ROUTES and answered < 400 else logging.INFO


def _log_request(
    scope: dict[str, Any], template: str, answered: int, seconds: float, level: int
) -> None:
    path = logged_path(scope, template)
    principal = (scope.get("state") or {}).get("principal")
    client = scope.get("client")
    log.log(
        level,
        "%s %s %d %.1f ms%s",
        scope["method"],
        path,
        answered,
        seconds * 1000,
        f" by {principal}" if principal else "",
        extra={
            "method": scope["method"],
            "path": path,
            "status": answered,
            "duration_ms": round(seconds * 1000, 1),
            "principal": principal,
            "client": client[0] if client else None,
        },
    )


def logged_path(scope: dict[str, Any], template: str) -> str:
    """The request's path and query as the log may show them (see the module's docstring)."""
    if template == "unmatched":
        path = "/".join(
            HIDDEN if len(part) > LONG_SEGMENT else part for part in scope["path"].split("/")
        )
    else:
        params = scope.get("path_params") or {}
        path = template
        for name, value in params.items():
            shown = f"{{{name}}}" if name in SECRET_PARAMS else str(value)
            path = path.replace(f"{{{name}}}", shown).replace(f"{{{name}:path}}", shown)
    query = scope.get("query_string") or b""
    if not query:
        return path
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    shown_query = "&".join(
        f"{key}={value if key in PLAIN_QUERY_KEYS else HIDDEN}" for key, value in pairs
    )
    return f"{path}?{shown_query}"
