"""Sends the outbox of timeline events (itilflow.models.timeline_events) to the Prefect server,
in batches, beside the runner's claims: the Prefect UI's event feed then follows one incident
(resource `itilflow.incident.INC-000042`), and automations can act on
`itilflow.incident.escalated`.

Delivery is at least once: a batch leaves the outbox only after the server answered 204 to
POST /api/events, which publishes every event of the batch or none. A runner killed between that
answer and the DELETE sends the batch again at its next start, with the same event ids: the
server's event store keeps one row per id, so the feed shows each entry once (an automation that
reacted to the first copy may react again). Why the HTTP endpoint and not the websocket client
(prefect.events.clients): the websocket confirms what it received only at its checkpoints, every
700 events or 30 s, so a batch could not be marked sent when it was sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow.models import TimelineEvent, forget_sent_events, pending_events, session_scope

log = logging.getLogger("itilflow.dispatch.events")

EVENTS_PER_POST = 200
POLL_SECONDS = 0.5
RETRY_FIRST = 2.0
RETRY_MAX = 60.0


def prefect_event(row: TimelineEvent) -> dict[str, Any]:
    """The Prefect event of one outbox row, as POST /api/events takes it."""
    number = row.resource.rpartition(".")[2]
    related = []
    if row.flow_run_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{row.flow_run_id}",
                "prefect.resource.role": "flow-run",
            }
        )
    return {
        "id": row.event_id,
        "occurred": row.occurred.isoformat(),
        "event": row.event,
        "resource": {"prefect.resource.id": row.resource, "prefect.resource.name": number},
        "related": related,
        "payload": row.payload,
    }


def _pending(engine: Engine, limit: int) -> list[TimelineEvent]:
    with Session(engine, expire_on_commit=False) as session:
        return pending_events(session=session, limit=limit)


def _forget(engine: Engine, ids: list[int]) -> None:
    with session_scope(engine) as session:
        forget_sent_events(session=session, ids=ids)


async def send_pending_events(
    engine: Engine, client: PrefectClient, *, limit: int = EVENTS_PER_POST
) -> int:
    """One batch of the outbox to the server; how many events it sent."""
    rows = await asyncio.to_thread(_pending, engine, limit)
    if not rows:
        return 0
    try:
        await _post(client, rows)
    except httpx.HTTPStatusError as exc:
        if not _refused(exc):
            raise
        # The server refuses the batch as invalid, and would again: find the event it refuses
        # (one POST each) and drop it, logged, rather than hold back every event behind it.
        for row in rows:
            try:
                await _post(client, [row])
            except httpx.HTTPStatusError as one:
                if not _refused(one):
                    raise
                log.error("Prefect refused event %s of %s: %s", row.event, row.resource, one)
    await asyncio.to_thread(_forget, engine, [row.id or 0 for row in rows])
    return len(rows)


async def _post(client: PrefectClient, rows: list[TimelineEvent]) -> None:
    response = await client.request("POST", "/events", json=[prefect_event(r) for r in rows])
    response.raise_for_status()


def _refused(exc: httpx.HTTPStatusError) -> bool:
    """A 4xx that sending again cannot change (not 408 or 429: those pass)."""
    code = exc.response.status_code
    return 400 <= code < 500 and code not in (408, 429)


async def send_events_until(stop: asyncio.Event, engine: Engine) -> None:
    """Send the outbox while the runner runs, and what is left when it stops (a few seconds at
    most: what is not sent then goes at the next start)."""
    retry = RETRY_FIRST
    async with get_client() as client:
        while not stop.is_set():
            try:
                sent = await send_pending_events(engine, client)
            except Exception as exc:  # noqa: BLE001 (server or database away: try again later)
                log.warning("could not send timeline events (%s); again in %.0f s", exc, retry)
                await _wait_or_stop(stop, retry)
                retry = min(retry * 2, RETRY_MAX)
                continue
            retry = RETRY_FIRST
            if sent < EVENTS_PER_POST:
                await _wait_or_stop(stop, POLL_SECONDS)
        try:
            await asyncio.wait_for(send_pending_events(engine, client), timeout=5)
        except Exception as exc:  # noqa: BLE001 (kept in the outbox for the next start)
            log.info("timeline events left for the next start: %s", exc)


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
