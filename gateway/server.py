"""How the gateway is served: uvicorn's configuration, and a guard on the connections that
have not finished their request's headers.

uvicorn times out a keep-alive connection between requests, but not one that sends part of a
request line or headers and then nothing: 19,990 such connections (the host's file limit is
20,000) made `/health` time out, and the accept errors grew the log by 33 MB in 13 s. The guard
(`HeaderGuarded`, mixed into uvicorn's httptools protocol, or its h11 one, one per connection)
therefore:
- closes a connection whose headers are not complete `header_timeout` seconds after it opened
  or after its last response (a keep-alive connection waiting for its next request counts too);
- keeps the connections at `max_connections`: a new one past it closes the connection that has
  waited longest for its headers, and is refused only when every other one is in a request;
- logs what it closed as one line a minute at most, never a line per connection.

Served on uvloop with httptools (pinned in pyproject.toml); h11 remains for `parser="h11"`. A
request line and headers larger than `h11_max_incomplete_event_size` (16 KiB) are refused with
either: h11 does it, the httptools protocol here counts them (llhttp has no such limit).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from itilflow.settings import Settings

log = logging.getLogger("itilflow.gateway.server")

# Descriptors kept for what is not a client connection: the database, log files, the thread
# pool's sockets, the Prefect client's and the SMTP connections.
RESERVED_FILES = 200
# A request line and headers larger than this are refused (h11's and uvicorn's default).
MAX_HEADERS = 16 * 1024
# At most one summary line of the guard's closings per this many seconds.
LOG_EVERY = 60.0


class HeaderGuard:
    """What the connections of one server share: who waits for headers, and the counts."""

    def __init__(self, header_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        # Connections waiting for a request's headers, oldest first (dicts keep their order).
        self.waiting: dict[GuardedH11Protocol, asyncio.TimerHandle] = {}
        self.closed: Counter[str] = Counter()
        self._summary_due = False
        self._last_summary = 0.0

    def note(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        """Count one closed connection; the summary follows within LOG_EVERY seconds."""
        self.closed[reason] += 1
        if not self._summary_due:
            self._summary_due = True
            wait = max(0.0, self._last_summary + LOG_EVERY - time.monotonic())
            loop.call_later(wait, self._summarise)

    def _summarise(self) -> None:
        self._summary_due = False
        self._last_summary = time.monotonic()
        counts = ", ".join(f"{count} {reason}" for reason, count in sorted(self.closed.items()))
        self.closed.clear()
        log.warning(
            "closed connections that did not send their headers in time or over the limit of "
            "%d: %s",
            self.max_connections,
            counts,
        )


class HeaderGuarded:
    """The HeaderGuard's timeout and connection limit, for a uvicorn HTTP protocol class
    (mixed in before it: GuardedH11Protocol, GuardedHttpToolsProtocol)."""

    guard: HeaderGuard  # set on the subclass `guarded_protocol` makes for one server
    # What the uvicorn protocol provides.
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def owes_headers(self) -> bool:
        """The client owes a request's headers: none sent yet, or only part of them."""
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        if len(self.connections) > self.guard.max_connections and not self._make_room():
            self.guard.note(self.loop, "refused at the limit")
            transport.abort()
            return
        self._follow_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        self._follow_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._follow_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)  # type: ignore[misc]

    def _follow_headers(self) -> None:
        """Wait (with the timeout) while the client owes a request's headers; else not."""
        if self.transport.is_closing() or not self.owes_headers():
            self._stop_waiting()
        elif self not in self.guard.waiting:
            timer = self.loop.call_later(self.guard.header_timeout, self._headers_too_late)
            self.guard.waiting[self] = timer

    def _stop_waiting(self) -> None:
        timer = self.guard.waiting.pop(self, None)
        if timer is not None:
            timer.cancel()

    def _headers_too_late(self) -> None:
        self.guard.waiting.pop(self, None)
        if not self.transport.is_closing() and self.owes_headers():
            self.guard.note(self.loop, "without headers in time")
            self.transport.close()

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for headers; False when none waits."""
        for oldest in self.guard.waiting:
            oldest._stop_waiting()
            self.guard.note(self.loop, "closed for a newer one at the limit")
            oldest.transport.close()
            # Counted no more from now: uvicorn answers 503 past limit_concurrency, and its
            # connection_lost may come after the newer one's request (uvloop reads it sooner).
            self.connections.discard(oldest)
            return True
        return False


class GuardedH11Protocol(HeaderGuarded, H11Protocol):
    """uvicorn's h11 protocol with the HeaderGuard (h11 stays IDLE until a request's headers
    are all in)."""

    def owes_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE


class GuardedHttpToolsProtocol(HeaderGuarded, HttpToolsProtocol):
    """uvicorn's httptools protocol with the HeaderGuard: the parser says when a request's
    headers are complete; after a response the next request owes them again, unless it came
    pipelined (its headers are in, it waits in `pipeline`)."""

    _headers_in = False
    _header_bytes = 0

    def data_received(self, data: bytes) -> None:
        # h11 stops at h11_max_incomplete_event_size; httptools has no such limit: the same here.
        if self.owes_headers():
            self._header_bytes += len(data)
            if self._header_bytes > (self.config.h11_max_incomplete_event_size or MAX_HEADERS):
                self.send_400_response("Request headers too large.")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._headers_in, self._header_bytes = True, 0
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._headers_in, self._header_bytes = bool(self.pipeline), 0
        super().on_response_complete()

    def owes_headers(self) -> bool:
        return not self._headers_in


PROTOCOLS: dict[str, type[HeaderGuarded]] = {
    "h11": GuardedH11Protocol,
    "httptools": GuardedHttpToolsProtocol,
}


def guarded_protocol(
    header_timeout: float, max_connections: int, parser: str = "httptools"
) -> type[HeaderGuarded]:
    """The protocol class of one server (`parser`: "httptools" or "h11"), with its own
    HeaderGuard."""
    guard = HeaderGuard(header_timeout, max_connections)
    return type("GatewayHTTPProtocol", (PROTOCOLS[parser],), {"guard": guard})


def connection_limit(wanted: int) -> int:
    """`wanted`, or fewer when the process may not open that many files: its soft limit is
    raised to the hard one first, and RESERVED_FILES are kept for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + RESERVED_FILES)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(1, min(wanted, soft - RESERVED_FILES))


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's configuration for the gateway: `itilflow gateway` serves it with this, and
    the fault tests do too (with `overrides`, e.g. port=...)."""
    max_connections = connection_limit(settings.gateway_max_connections)
    values: dict[str, Any] = {
        "host": settings.gateway_host,
        "port": settings.gateway_port,
        "log_level": "warning",
        # uvicorn's lines go through the process's logging (itilflow/logs.py: level, JSON), and
        # its access log is gateway/access.py's.
        "log_config": None,
        "access_log": False,
        # uvloop and httptools: +48 % alerts/s at one alert per request (issue 13). For this
        # process alone: every other server of the stack keeps asyncio and h11 explicitly.
        "loop": "uvloop",
        "http": guarded_protocol(settings.gateway_header_timeout, max_connections, "httptools"),
        "timeout_keep_alive": settings.gateway_keep_alive_timeout,
        # In-flight requests: one per connection at most, so never below the connections the
        # guard lets in (uvicorn counts connections too, and would answer them 503).
        "limit_concurrency": max_connections + 1,
        "h11_max_incomplete_event_size": MAX_HEADERS,
    }
    return uvicorn.Config(app=app, **(values | overrides))
