"""Flood: warning alerts pour in through the gateway while P1 alerts come at random moments.

    .venv/bin/python bench/flood.py [--alerts 2000] [--seconds 30] [--p1 8] [--per-request 10]
                                    [--wait 600] [--seed 13]

Issue 13's benchmark (10,000 warning alerts over 60 s; goals: P1 alert to first notification
p95 <= 3 s, every flood incident notified, the backlog drained within 2 minutes of the last
alert), scaled by its flags to run here in minutes. Starts the stack as bench/alert_latency.py
does: a Prefect server, the gateway (uvicorn child), the runner (`python -m itilflow.cli runner`
child, as `itilflow up` runs it), an SMTP server and a chat sink in this process stamping each
arrival. Then sends, evenly over `--seconds`, `--alerts` distinct warning alerts (P3 by the
default priority matrix), `--per-request` to a POST as Alertmanager groups them, and meanwhile
`--p1` critical alerts with impact high (P1), one a POST, at random moments of the flood.

Prints: P1 POST -> first chat message p50/p95/max; the flood's drain time after its last alert
was accepted (its last incident's first chat message); how many flood incidents have a
`notified` entry on their timeline, out of how many were opened.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time
from typing import Any

import _common
import httpx
from _common import (
    PYTHON,
    Gateway,
    PrefectServer,
    alertmanager_payload,
    banner,
    base_env,
    firing_alert,
    itilflow_env,
    percentile,
    settings_from_env,
    spawn,
    summary,
    temp_dir,
    write_apprise_config,
)
from alert_latency import Arrivals, start_peers

Sent = dict[str, float]  # incident number -> monotonic time its POST was answered


class Load:
    """The flood and the P1s, sent on one schedule; what each POST opened, and when."""

    def __init__(self, gateway: Gateway, args: argparse.Namespace, run: str = "flood") -> None:
        self.gateway = gateway
        self.args = args
        self.run_name = run  # in the alerts' fingerprints: each run's alerts are new
        self.flood: Sent = {}
        self.p1: dict[str, float] = {}  # number -> time its POST was sent
        self.last_flood_answer = 0.0
        self.refused = 0

    async def run(self) -> None:
        args = self.args
        requests = -(-args.alerts // args.per_request)  # rounded up
        schedule: list[tuple[float, str, int]] = [
            (n * args.seconds / requests, "flood", n) for n in range(requests)
        ]
        moments = sorted(random.uniform(0.1, 0.9) * args.seconds for _ in range(args.p1))
        schedule += [(at, "p1", n) for n, at in enumerate(moments)]
        schedule.sort()
        headers = {"Authorization": f"Bearer {self.gateway.token}"}
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=self.gateway.url, headers=headers, timeout=120, trust_env=False, limits=limits
        ) as client:
            start = time.monotonic()
            tasks = []
            for at, what, n in schedule:
                await asyncio.sleep(max(0.0, start + at - time.monotonic()))
                send = self._flood if what == "flood" else self._p1
                tasks.append(asyncio.create_task(send(client, n)))
            await asyncio.gather(*tasks)

    async def _flood(self, client: httpx.AsyncClient, n: int) -> None:
        first = n * self.args.per_request
        count = min(self.args.per_request, self.args.alerts - first)
        alerts = [
            firing_alert(first + i, run=self.run_name, starts_at=STARTS_AT, severity="warning")
            for i in range(count)
        ]
        numbers = await self._post(client, alerts)
        answered = time.monotonic()
        self.last_flood_answer = max(self.last_flood_answer, answered)
        self.flood.update(dict.fromkeys(numbers, answered))

    async def _p1(self, client: httpx.AsyncClient, n: int) -> None:
        alert = firing_alert(n, run=f"{self.run_name}-p1", starts_at=STARTS_AT)
        alert["labels"]["impact"] = "high"
        sent_at = time.monotonic()
        for number in await self._post(client, [alert]):
            self.p1[number] = sent_at

    async def _post(self, client: httpx.AsyncClient, alerts: list[dict]) -> list[str]:
        response = await client.post("/api/alertmanager", json=alertmanager_payload(alerts))
        if response.status_code >= 300:
            self.refused += len(alerts)
            return []
        return [outcome["number"] for outcome in response.json()["alerts"]]


STARTS_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wait_for_chats(arrivals: Arrivals, numbers: list[str], limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with arrivals.lock:
            if all((number, "chat") in arrivals.first for number in numbers):
                return
        time.sleep(0.2)


def notified_in_database(settings: Any, numbers: list[str]) -> int:
    """Flood incidents with a `notified` entry on their timeline."""
    from sqlmodel import Session, col, func, select

    from itilflow.models import Incident, TimelineEntry, get_engine, parse_incident_ref

    ids = [parse_incident_ref(number) for number in numbers]
    with Session(get_engine(settings.database_url)) as session:
        query = (
            select(func.count(func.distinct(TimelineEntry.incident_id)))
            .join(Incident, col(Incident.id) == TimelineEntry.incident_id)
            .where(TimelineEntry.kind == "notified", col(Incident.id).in_(ids))
        )
        return session.exec(query).one()


def report(load: Load, arrivals: Arrivals, settings: Any) -> None:
    banner("figures")
    p1 = [
        arrivals.first[(number, "chat")] - sent_at
        for number, sent_at in load.p1.items()
        if (number, "chat") in arrivals.first
    ]
    print(f"P1 alerts {len(load.p1)}: POST -> first chat {summary(p1)}")
    missing = len(load.p1) - len(p1)
    p95 = percentile(p1, 95) if p1 else float("nan")
    goal = "met" if p1 and not missing and p95 <= 3 else "MISSED"
    print(f"  p50 {percentile(p1, 50):.2f}s p95 {p95:.2f}s (goal p95 <= 3 s: {goal})")
    flood = list(load.flood)
    chats = [arrivals.first[(n, "chat")] for n in flood if (n, "chat") in arrivals.first]
    drained = max(chats, default=load.last_flood_answer) - load.last_flood_answer
    print(
        f"flood: {len(flood)} incidents opened ({load.refused} alerts refused); "
        f"{len(chats)} with a chat message; drained {drained:.1f}s after the last alert"
    )
    notified = notified_in_database(settings, flood)
    print(
        f"  notified on their timeline: {notified} of {len(flood)}"
        f" ({'every one' if notified == len(flood) else 'MISSING ' + str(len(flood) - notified)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=2000, help="warning alerts in the flood")
    parser.add_argument("--seconds", type=float, default=30.0, help="the flood's duration")
    parser.add_argument("--p1", type=int, default=8, help="P1 alerts during the flood")
    parser.add_argument("--per-request", type=int, default=10, help="flood alerts per POST")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for a drain")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    random.seed(args.seed)

    tmp = temp_dir("flood")
    server = PrefectServer(tmp / "prefect")
    started = time.monotonic()
    server_thread = threading.Thread(target=server.start, daemon=True)
    server_thread.start()
    arrivals = Arrivals()
    sink, smtp = start_peers(arrivals)
    try:
        apprise = write_apprise_config(tmp / "apprise.yaml", sink.apprise_url())
        env = itilflow_env(tmp / "data", smtp_port=smtp.port, apprise_config=apprise)
        settings = settings_from_env(env)
        from itilflow.demo import load_people
        from itilflow.models import create_db, get_engine

        create_db(get_engine(settings.database_url))  # as `itilflow db upgrade` does
        load_people(settings)
        gateway = Gateway(env, tmp / "gateway.log").start()
        server_thread.join(timeout=150)
        if not server.proc or server.startup_seconds == 0:
            raise SystemExit(f"Prefect server did not start:\n{_common.tail(server.log)}")
        runner_log = tmp / "runner.log"
        runner_env = base_env() | env | server.client_env()
        runner = spawn([PYTHON, "-m", "itilflow.cli", "runner"], env=runner_env, log=runner_log)
        print(f"stack up in {time.monotonic() - started:.1f}s")

        banner("warm-up (not counted)")
        warm_args = {**vars(args), "alerts": 0, "p1": 2, "seconds": 1.0}
        warm = Load(gateway, argparse.Namespace(**warm_args), run="warm")
        asyncio.run(warm.run())
        wait_for_chats(arrivals, list(warm.p1), limit=120)
        if runner.poll() is not None:
            raise SystemExit(f"runner exited:\n{_common.tail(runner_log)}")

        banner(f"flood: {args.alerts} warning alerts over {args.seconds:.0f}s, {args.p1} P1s")
        load = Load(gateway, args)
        asyncio.run(load.run())
        wait_for_chats(arrivals, [*load.p1, *load.flood], limit=args.wait)
        report(load, arrivals, settings)
    finally:
        _common.kill_children()
        sink.stop()
        smtp.stop()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
