"""What an action and a plan leave behind: results, events and outcomes, with output kept short and
secrets redacted.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import (
    Field,
)

from itilflow import clock
from itilflow.executors.schema import (
    OUTPUT_LIMIT,
    REDACT_MIN_LENGTH,
    REDACTED,
    Outcome,
    Phase,
    StrictModel,
)

# Results


class ActionResult(StrictModel):
    ok: bool
    summary: str
    """One line for the timeline: `exit 0`, `GET https://x/health -> 200 OK`, `timed out ...`."""
    output: str = ""
    """stdout and stderr interleaved, or the HTTP status line and body; at most ~8 kB."""
    exit_code: int | None = None
    status_code: int | None = None
    timed_out: bool = False
    duration_seconds: float = 0.0
    started_at: datetime
    finished_at: datetime


class PlanEvent(StrictModel):
    phase: Phase
    name: str
    result: ActionResult


class PlanOutcome(StrictModel):
    outcome: Outcome
    events: list[PlanEvent]
    """Every finished action, in order."""
    failure: PlanEvent | None = None
    """The failed backup, step or check that stopped the change (None when successful)."""
    not_rolled_back: list[str] = Field(default_factory=list)
    """Implementation steps that remain applied after a failed rollback, latest first."""

    @property
    def ok(self) -> bool:
        return self.outcome == "successful"


class Timer:
    def __init__(self) -> None:
        self.started_at = clock.now()
        self._start = time.monotonic()

    def result(self, *, ok: bool, summary: str, **fields: Any) -> ActionResult:
        return ActionResult(
            ok=ok,
            summary=summary,
            duration_seconds=round(time.monotonic() - self._start, 3),
            started_at=self.started_at,
            finished_at=clock.now(),
            **fields,
        )


class Capture:
    """Keeps the first and the last `limit / 2` bytes of a stream."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self._half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self._half:
                del self.tail[: len(self.tail) - self._half]

    def text(self, secrets: Iterable[str] = ()) -> str:
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        dropped = self.total - len(self.head) - len(self.tail)
        secrets = secret_values(secrets)
        if dropped <= 0:
            return redact(head + tail, secrets)
        # A secret cut by the marker would leave a fragment: trim the cut edges by its length.
        edge = max((len(s) for s in secrets), default=0)
        if edge:
            head, tail = head[:-edge] if len(head) > edge else "", tail[edge:]
            dropped += 2 * edge
        marker = f"\n... [{dropped} bytes left out] ...\n"
        return redact(head, secrets) + marker + redact(tail, secrets)


def secret_values(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if len(v) >= REDACT_MIN_LENGTH}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def last_line(text: str, limit: int = 200) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def format_seconds(value: float) -> str:
    return f"{value:g}s"


def os_reason(exc: BaseException) -> str | None:
    """The innermost OS error's text ("Connection refused"), which httpx wraps in generic ones."""
    reason = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            # asyncio words a refusal "Connect call failed (...)": name the errno instead.
            by_errno = not isinstance(current, socket.gaierror) and current.errno
            reason = os.strerror(current.errno) if by_errno else current.strerror
        current = current.__cause__ or current.__context__
    return reason
