"""An HTTP action: one request with a timeout, its status checked against the expected classes."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from itilflow.executors.containment import Containment, ContainmentRefused
from itilflow.executors.results import (
    ActionResult,
    Capture,
    Timer,
    format_seconds,
    os_reason,
    redact,
    secret_values,
)
from itilflow.executors.schema import HTTP_BODY_LIMIT, SENSITIVE_HEADER, HttpAction


async def run_http(action: HttpAction, containment: Containment | None = None) -> ActionResult:
    """One request, to a host the containment allows (else none is made)."""
    timer = Timer()
    contained = containment or Containment()
    secrets = [*contained.secrets]
    secrets += [v for k, v in action.headers.items() if SENSITIVE_HEADER.search(k)]
    url_parts = urlsplit(action.url)
    secrets += [s for s in (url_parts.password,) if s]
    what = action.describe()
    try:
        contained.check_host(action.url)
    except (ContainmentRefused, httpx.InvalidURL) as exc:
        return timer.result(
            ok=False, summary=redact(f"{what}: refused: {exc}", secret_values(secrets))
        )
    request: dict[str, Any] = {"headers": action.headers}
    if action.json_body is not None:
        request["json"] = action.json_body
    elif action.body is not None:
        request["content"] = action.body.encode()

    capture = Capture()
    body = bytearray()
    cut = False
    try:
        # httpx's timeout is per operation; the outer one bounds the whole call.
        async with asyncio.timeout(action.timeout):
            async with httpx.AsyncClient(timeout=action.timeout, follow_redirects=False) as client:
                async with client.stream(action.method, action.url, **request) as response:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > HTTP_BODY_LIMIT:
                            del body[HTTP_BODY_LIMIT:]
                            cut = True
                            break
    except (TimeoutError, httpx.TimeoutException):
        summary = f"{what}: timed out after {format_seconds(action.timeout)}"
        return timer.result(
            ok=False, summary=redact(summary, secret_values(secrets)), timed_out=True
        )
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            reason = f"could not connect: {os_reason(exc) or reason}"
        summary = f"{what}: {reason}"
        return timer.result(ok=False, summary=redact(summary, secret_values(secrets)))

    status = response.status_code
    text = bytes(body).decode(response.charset_encoding or "utf-8", errors="replace")
    capture.feed(f"HTTP {status} {response.reason_phrase}\n".encode())
    capture.feed(text.encode())
    output = capture.text(secrets)
    if cut:
        output += f"\n[body longer than {HTTP_BODY_LIMIT} bytes; the rest was not read]"
    summary = f"{what} -> {status} {response.reason_phrase}".rstrip()
    ok = True
    if not action.accepts(status):
        ok = False
        summary += f", expected {' or '.join(str(e) for e in action.expect_status)}"
    if action.expect_text is not None and action.expect_text not in text:
        ok = False
        summary += f", body does not contain {action.expect_text!r}"
    return timer.result(
        ok=ok, summary=redact(summary, secret_values(secrets)), output=output, status_code=status
    )
