"""The timeline's Prefect events survive what can go wrong between the database and the Prefect
server: a server that cannot be reached keeps them in the outbox, and a runner killed between
the server's answer and forgetting the batch sends it again with the same event ids, which the
server stores once (at least once, deduplicated by id). On the Prefect test server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.events.filters import EventFilter, EventIDFilter, EventOccurredFilter
from sqlmodel import Session

from itilflow.dispatch import events as sender
from itilflow.models import add_timeline, pending_events, session_scope
from tests.flows.test_incident_flow import open_incident

pytestmark = pytest.mark.usefixtures("prefect_server")
PERSISTER_FLUSH = 5  # s, PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL's default


def outbox_ids(rt) -> list[str]:
    with Session(rt.engine) as session:
        return [row.event_id for row in pending_events(session=session, limit=1000)]


async def stored(event_ids: list[str], since: datetime) -> list[str]:
    """The ids of the server's events among `event_ids`, once all are stored (and a flush of
    the server's persister later, for a second copy to show) or after 30 s."""
    wanted = EventFilter(
        id=EventIDFilter(id=event_ids),
        occurred=EventOccurredFilter(since=since, until=datetime.now(UTC) + timedelta(hours=1)),
    )
    async with get_client() as client:
        for _ in range(60):
            page = await client.read_events(filter=wanted, limit=50)
            if len(page.events) >= len(event_ids):
                await asyncio.sleep(PERSISTER_FLUSH)
                page = await client.read_events(filter=wanted, limit=50)
                break
            await asyncio.sleep(0.5)
    return sorted(str(event.id) for event in page.events)


def some_entries(rt, client) -> None:
    incident = open_incident(client, title="queue backs up")
    with session_scope(rt.engine) as session:
        for _ in range(3):
            add_timeline(session=session, incident_id=incident["id"], kind="commented", actor="bo")


async def test_an_unreachable_server_keeps_the_events(client, rt):
    some_entries(rt, client)
    before = outbox_ids(rt)
    async with PrefectClient(api="http://127.0.0.1:9/api") as nowhere:
        with pytest.raises(httpx.HTTPError):
            await sender.send_pending_events(rt.engine, nowhere)
    assert outbox_ids(rt) == before and len(before) == 4


async def test_a_batch_sent_again_after_a_crash_is_stored_once(client, rt, monkeypatch):
    since = datetime.now(UTC) - timedelta(seconds=1)
    some_entries(rt, client)
    sent = outbox_ids(rt)

    def killed_before_forgetting(*_: object) -> None:
        raise SystemExit("runner killed between the server's answer and the DELETE")

    with monkeypatch.context() as patched:
        patched.setattr(sender, "_forget", killed_before_forgetting)
        async with get_client() as prefect:
            with pytest.raises(SystemExit):
                await sender.send_pending_events(rt.engine, prefect)
    assert outbox_ids(rt) == sent, "nothing was marked sent"

    async with get_client() as prefect:  # the next start sends the batch again
        assert await sender.send_pending_events(rt.engine, prefect) == len(sent)
        assert await sender.send_pending_events(rt.engine, prefect) == 0
    assert outbox_ids(rt) == []
    assert await stored(sent, since) == sorted(sent), "each event once on the server"


async def test_an_event_the_server_refuses_is_dropped_not_retried_forever(client, rt, monkeypatch):
    since = datetime.now(UTC) - timedelta(seconds=1)
    some_entries(rt, client)
    refused, *others = outbox_ids(rt)
    shape = sender.prefect_event

    def one_invalid(row):
        event = shape(row)
        return event if row.event_id != refused else {**event, "id": "not-a-uuid"}

    monkeypatch.setattr(sender, "prefect_event", one_invalid)
    async with get_client() as prefect:
        assert await sender.send_pending_events(rt.engine, prefect) == 1 + len(others)
    assert outbox_ids(rt) == [], "the refused one is logged and dropped, the others sent"
    assert await stored(others, since) == sorted(others)
