"""What the metrics and the access log cost (docs/observability.md).

    .venv/bin/python bench/metrics.py [--incidents N]

1. Per request: the access-log middleware (gateway/access.py) around a trivial ASGI app, with
   the counters only (ITILFLOW_ACCESS_LOG=false), and with a text or a JSON log line written to
   a file: CPU microseconds per request on top of the bare app. The intake costs ~900 us of
   gateway CPU per one-alert request (bench/intake.py), so this is the ratio to watch.
2. Per scrape: the gateway's database figures (gateway/metrics.py read_figures) with N open
   incidents and their pending triggers on SQLite: milliseconds per read (cached 5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import time
from typing import Any

import _common  # noqa: F401  (sys.path)
from _common import banner, temp_dir

REQUESTS = 30_000


class _Route:
    path = "/api/alertmanager"


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = _Route
    scope.setdefault("state", {})["principal"] = "alertmanager"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _us_per_request(app: Any) -> float:
    async def send(_: Any) -> None:
        pass

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    started = time.process_time()
    for _ in range(REQUESTS):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/alertmanager",
            "query_string": b"",
            "client": ("127.0.0.1", 40000),
            "headers": [],
        }
        await app(scope, receive, send)
    return (time.process_time() - started) / REQUESTS * 1e6


def middleware_costs() -> None:
    from itilflow.gateway.access import AccessLog
    from itilflow.logs import formatter_for

    banner(f"access log and counters: CPU per request, {REQUESTS} requests per figure")
    handler = logging.FileHandler(temp_dir("metrics-log") / "gateway.log")
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for fmt in ("text", "json"):
        handler.setFormatter(formatter_for(fmt))  # type: ignore[arg-type]
        figures: dict[str, list[float]] = {"counters": [], "line": []}
        for _ in range(3):
            bare = asyncio.run(_us_per_request(_bare_app))
            figures["counters"].append(
                asyncio.run(_us_per_request(AccessLog(_bare_app, enabled=False))) - bare
            )
            figures["line"].append(
                asyncio.run(_us_per_request(AccessLog(_bare_app, enabled=True))) - bare
            )
        print(
            f"  {fmt:>4} log: counters +{statistics.median(figures['counters']):.1f} us, "
            f"counters and a log line +{statistics.median(figures['line']):.1f} us per request"
        )
    root.removeHandler(handler)


def scrape_costs(incidents: int) -> None:
    from sqlalchemy import event
    from sqlmodel import Session

    from itilflow import clock
    from itilflow.gateway.health import side_engine
    from itilflow.gateway.metrics import read_figures
    from itilflow.models import IncidentCreate, create_db, get_engine
    from itilflow.policies import load_policies
    from itilflow.services import incidents as incident_rules

    banner(f"database figures: one read with {incidents} open incidents (SQLite)")
    engine = get_engine(f"sqlite:///{(temp_dir('metrics-db') / 'itilflow.db').resolve()}")
    create_db(engine)
    policies = load_policies(None)
    for start in range(0, incidents, 1000):
        count = min(1000, incidents - start)
        new = [
            IncidentCreate(
                title=f"disk full {start + n}",
                impact=("high", "medium", "low")[n % 3],
                urgency="medium",
                source="api",
            )
            for n in range(count)
        ]
        with Session(engine) as session:
            incident_rules.open_incidents(
                session=session,
                new=new,
                dedup_keys=[None] * count,
                policies=policies,
                actor="bench",
            )
            session.commit()
    reader = side_engine(engine)
    per_query: dict[str, list[float]] = {}
    started_at: list[float] = []

    def before(*_: Any) -> None:
        started_at.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        found = re.search(r"\bFROM\s+(\w+)", statement)
        table = found[1] if found else "?"
        per_query.setdefault(table, []).append((time.perf_counter() - started_at.pop()) * 1000)

    event.listen(reader, "before_cursor_execute", before)
    event.listen(reader, "after_cursor_execute", after)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        with Session(reader) as session:
            read_figures(session, clock.now())
        timings.append((time.perf_counter() - started) * 1000)
    print(f"  read_figures: {statistics.median(timings):.1f} ms (median of 5, cached 5 s)")
    for table, values in per_query.items():
        print(f"    query on {table}: {statistics.median(values):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=20_000)
    args = parser.parse_args()
    middleware_costs()
    scrape_costs(args.incidents)


if __name__ == "__main__":
    main()
