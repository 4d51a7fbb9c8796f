"""What every inspection probe returns (a result row, or NoAnswer to be tried again), the HTTP
clients the probes share, and how a failure is told in a few words."""

from __future__ import annotations

import asyncio
import ssl
from datetime import datetime
from typing import Any

import httpx

from itilflow import clock

Result = dict[str, Any]


# (target, filesystem check name) -> [(at, {mountpoint: used percent})], oldest first
FillHistory = dict[tuple[str, str], list[tuple[datetime, dict[str, float]]]]


class NoAnswer(Exception):
    """The target did not answer usefully: tried again, then an `error` result."""


class Clients:
    """One pooled HTTP client per TLS setting for the whole run."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}

    def get(self, verify: bool = True, ca_file: str | None = None) -> httpx.AsyncClient:
        key = (verify, ca_file)
        if key not in self._clients:
            tls: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=ca_file) if verify and ca_file else verify
            )
            self._clients[key] = httpx.AsyncClient(
                verify=tls,
                limits=httpx.Limits(max_connections=self._size, max_keepalive_connections=20),
                headers={"User-Agent": "itilflow-inspection"},
            )
        return self._clients[key]

    async def close(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients.values()))


def check_result(
    target: str,
    check: str,
    check_type: str,
    status: str,
    value: float | None = None,
    unit: str = "",
    message: str = "",
    details: dict[str, Any] | None = None,
) -> Result:
    return {
        "target": target,
        "check_name": check,
        "check_type": check_type,
        "status": status,
        "value": value,
        "unit": unit,
        "message": message[:2000],
        "details": details or {},
        "attempts": 1,
        "at": clock.now(),
    }


def describe_failure(exc: BaseException) -> str:
    """The root cause in a few words: httpx hides a refused connection three causes deep."""
    text = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: {cause}"[:500]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        text = f"cannot connect: {text}"
    return text[:500]
