"""Whole processing: how many incidents a second one runner takes from the gateway to classified,
assigned, notified and on the clock, and what each costs, with few and with many already open.

    .venv/bin/python bench/processing.py [--open 1000,50000] [--alerts 2000] [--per-request 10]
                                         [--severity warning] [--wait 1200] [--profile runner]

Issue 13's last benchmark (goal: >= 200 incidents/s on one runner, and the cost per incident the
same with 1,000 and with 50,000 incidents open). For each count of `--open`, on a fresh data
folder and a fresh Prefect server:

  * seeds that many open incidents straight into the database, in bulk (Core INSERTs, no flow
    runs), as the open-incidents flow leaves them: classified (priority, escalation chain,
    language), assigned by the assignment policy with the engineers' loads (the demo team's
    capacity is soon full: the rest go to the group), their `opened`, `classified`,
    `assigned`, `notified` and `sla_started` timeline entries, their `open` trigger done and
    their SLA timers pending (planned by services.sla_timers.plan_timers). They were opened in
    the minute before the run, so none of their timers comes due during it; their Prefect
    events count as sent (no outbox rows). Alerts of severity warning and info (P3, P4), of the
    same shape as the burst's;
  * starts the stack as bench/flood.py does: the Prefect server, the gateway, the runner
    (`python -m itilflow.cli runner`, as `itilflow up` runs it), an SMTP server and a chat sink;
  * warms it up with two alerts (not counted), then sends `--alerts` new alerts of `--severity`
    at once (warning: P3, served by the open lane in batches of 80; critical is P2, which the
    urgent lane takes 25 at a time beside it), `--per-request` to a POST as Alertmanager groups
    them, up to 50 POSTs in flight;
  * waits until each has its `sla_started` entry (the flow's last step, after its messages went
    out), and counts those without a `classified`, `assigned` or `notified` entry.

Printed per open count: accepted/s (alerts / first POST sent to last POST answered); processed/s
(incidents / first one's `opened_at` to the last `notified` or `sla_started` entry of any of
them); CPU of the runner, the Prefect server and the gateway over that window, in ms per
incident, and what the runner and server spent after it until the runner had sent the
timeline's events to the server (the outbox drained); then the ratio between the last and the
first open count. `--profile runner|server` records the last open count's run with py-spy.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
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
    cpu_seconds,
    firing_alert,
    itilflow_env,
    settings_from_env,
    spawn,
    temp_dir,
    write_apprise_config,
)
from alert_latency import engine_report

STARTS_AT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
SEED_SEVERITIES = ("warning", "warning", "warning", "info")  # P3, P3, P3, P4
SEED_CHUNK = 5000  # rows per executemany
BATCH = 80  # incidents per open-incidents flow run (itilflow.dispatch.runner.BATCH_SIZE)


# ---------------------------------------------------------------------------------- seeding


def seed_open_incidents(settings: Any, count: int) -> int:
    """`count` open incidents as the open-incidents flow leaves them, written in bulk. Returns
    the highest incident id (the burst's incidents come after it)."""
    from sqlalchemy import func, insert, select

    from itilflow.models import (
        FlowTrigger,
        Incident,
        IncidentStatus,
        TimelineEntry,
        get_engine,
        list_engineers,
        rank_of,
        session_scope,
    )
    from itilflow.notifications.incident_audience import audience_emails
    from itilflow.policies import (
        Candidate,
        StatusEvent,
        choose_assignee,
        load_policies,
        route_notification,
        snapshot_escalation,
    )
    from itilflow.services.alerts import AlertIn, _new_incident, alert_dedup_key
    from itilflow.services.incidents import classify
    from itilflow.services.sla_timers import plan_timers

    policies = load_policies(settings.policy_dir)
    engine = get_engine(settings.database_url)
    seeded_at = datetime.now(UTC)
    with session_scope(engine) as session:
        engineers = list_engineers(session=session)
        candidates = {
            (engineer.username, group): engineer
            for engineer in engineers
            for group in engineer.memberships()
        }
        load: dict[str, int] = {}
        emails: dict[tuple[str | None, str | None], list[str]] = {}
        timers: dict[tuple[str, int], list[Any]] = {}
        incidents: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        triggers: list[dict[str, Any]] = []
        for index in range(count):
            incident_id = index + 1
            alert = AlertIn.model_validate(
                firing_alert(
                    index,
                    run="open",
                    starts_at=STARTS_AT,
                    severity=SEED_SEVERITIES[index % len(SEED_SEVERITIES)],
                )
            )
            new = _new_incident(alert, policies)
            priority = classify(new, policies)
            if index % BATCH == 0:  # the runner opens them in batches, one flow run each
                run_id = str(uuid.uuid4())
            age = index % 60  # opened in the last minute, a few every second
            opened_at = seeded_at - timedelta(seconds=60 - age)
            assignment = choose_assignee(
                policies.assignment,
                new.category,
                [
                    Candidate(
                        username=username,
                        group=group,
                        skills=frozenset(engineer.skills),
                        capacity=engineer.capacity,
                        on_duty=engineer.on_duty,
                        open_load=load.get(username, 0),
                    )
                    for (username, group), engineer in candidates.items()
                ],
            )
            if assignment.engineer:
                load[assignment.engineer] = load.get(assignment.engineer, 0) + 1
            route = route_notification(policies.routing, priority, assignment.group)
            snapshot = snapshot_escalation(policies.escalation, priority).model_dump(mode="json")
            incident = {
                **new.row(),
                "id": incident_id,
                "priority": priority,
                "status": IncidentStatus.assigned,
                "group_name": assignment.group,
                "assignee": assignment.engineer,
                "language": route.language,
                "dedup_key": alert_dedup_key(alert),
                "escalation": snapshot,
                "opened_at": opened_at,
                "updated_at": opened_at,
            }
            incidents.append(incident)
            who = (assignment.group, assignment.engineer)
            if who not in emails:
                emails[who] = audience_emails(
                    session,
                    Incident(title="", group_name=who[0], assignee=who[1]),
                    "assignee",
                )
            if (priority, age) not in timers:
                template = Incident(
                    title="",
                    priority=priority,
                    status=IncidentStatus.assigned,
                    escalation=snapshot,
                    opened_at=opened_at,
                )
                events = [StatusEvent(at=opened_at, kind="opened")]
                timers[(priority, age)] = plan_timers(template, events, policies, set(), seeded_at)
            planned = timers[(priority, age)]

            def entry(kind: str, actor: str, message: str, data: dict[str, Any]) -> None:
                entries.append(
                    {
                        "incident_id": incident_id,  # noqa: B023 (used at once)
                        "at": opened_at,  # noqa: B023
                        "actor": actor,
                        "kind": kind,
                        "message": message,
                        "data": data,
                    }
                )

            flow = "flow:open-incident"
            entry(
                "opened",
                "alertmanager",
                "opened from alertmanager",
                {"source": "alertmanager", "dedup_key": incident["dedup_key"]},
            )
            entry(
                "classified",
                flow,
                f"priority {priority}",
                {"priority": priority, "impact": new.impact, "urgency": new.urgency},
            )
            entry(
                "assigned",
                flow,
                f"{assignment.group} / {assignment.engineer or 'nobody available'}: "
                f"{assignment.reason}",
                {"group": assignment.group, "engineer": assignment.engineer},
            )
            for channel, to in (("email", emails[who]), ("chat", route.tags)):
                if to:
                    entry(
                        "notified",
                        flow,
                        f"incident_opened by {channel} to {', '.join(to)}",
                        {"key": "opened", "channel": channel, "to": to},
                    )
            entry(
                "sla_started",
                flow,
                f"{len(planned)} timers",
                {"timers": [f"{t.key} at {t.due_at.isoformat()}" for t in planned]},
            )
            common = {
                "incident_id": incident_id,
                "priority_rank": rank_of(priority),
                "created_at": opened_at,
                "attempts": 1,
            }
            triggers.append(
                {
                    **common,
                    "kind": "open",
                    "key": "open",
                    "due_at": opened_at,
                    "data": {},
                    "done_at": opened_at,
                    "claimed_by": "seed:runner",
                    "claimed_until": opened_at,
                    "flow_run_id": run_id,
                }
            )
            triggers += [
                {
                    **common,
                    "kind": t.kind,
                    "key": t.key,
                    "due_at": t.due_at,
                    "data": t.data,
                    "attempts": 0,
                    "done_at": None,
                    "claimed_by": None,
                    "claimed_until": None,
                    "flow_run_id": None,
                }
                for t in planned
            ]
        connection = session.connection()
        tables = (
            (Incident.__table__, incidents),  # type: ignore[attr-defined]
            (TimelineEntry.__table__, entries),  # type: ignore[attr-defined]
            (FlowTrigger.__table__, triggers),  # type: ignore[attr-defined]
        )
        for table, rows in tables:
            for start in range(0, len(rows), SEED_CHUNK):
                connection.execute(insert(table), rows[start : start + SEED_CHUNK])
        highest = connection.execute(select(func.max(Incident.__table__.c.id))).scalar()  # type: ignore[attr-defined]
    engine.dispose()
    return int(highest or 0)


# ---------------------------------------------------------------------------------- the burst


class Burst:
    """`--alerts` new alerts at once, `--per-request` to a POST; when each POST was answered."""

    def __init__(self, gateway: Gateway, args: argparse.Namespace, run: str) -> None:
        self.gateway, self.args, self.run_name = gateway, args, run
        self.numbers: list[str] = []
        self.first_sent = self.last_answer = 0.0
        self.refused = 0

    async def send(self) -> None:
        args = self.args
        headers = {"Authorization": f"Bearer {self.gateway.token}"}
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=self.gateway.url, headers=headers, timeout=120, trust_env=False, limits=limits
        ) as client:
            self.first_sent = time.time()
            await asyncio.gather(
                *(self._post(client, first) for first in range(0, args.alerts, args.per_request))
            )

    async def _post(self, client: httpx.AsyncClient, first: int) -> None:
        count = min(self.args.per_request, self.args.alerts - first)
        alerts = [
            firing_alert(
                first + i, run=self.run_name, starts_at=STARTS_AT, severity=self.args.severity
            )
            for i in range(count)
        ]
        response = await client.post("/api/alertmanager", json=alertmanager_payload(alerts))
        self.last_answer = max(self.last_answer, time.time())
        if response.status_code >= 300:
            self.refused += count
            return
        self.numbers += [outcome["number"] for outcome in response.json()["alerts"]]


# ---------------------------------------------------------------------------------- progress


def processed_count(engine: Any, floor: int) -> int:
    """Incidents above `floor` whose open-incidents flow wrote its last entry."""
    from sqlmodel import Session, col, func, select

    from itilflow.models import TimelineEntry

    with Session(engine) as session:
        query = select(func.count(func.distinct(TimelineEntry.incident_id))).where(
            TimelineEntry.kind == "sla_started", col(TimelineEntry.incident_id) > floor
        )
        return session.exec(query).one()


def outbox_rows(engine: Any) -> int:
    from sqlmodel import Session, func, select

    from itilflow.models.timeline_events import TimelineEvent

    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(TimelineEvent)).one()


def wait_processed(engine: Any, floor: int, expected: int, limit: float, runner: Any) -> int:
    deadline = time.monotonic() + limit
    done = 0
    while time.monotonic() < deadline:
        done = processed_count(engine, floor)
        if done >= expected:
            return done
        if runner.poll() is not None:
            raise SystemExit(f"runner exited with {runner.returncode}")
        time.sleep(0.5)
    return done


def steps_of(engine: Any, floor: int) -> dict[int, dict[str, list[datetime]]]:
    """Per incident above `floor`: its entries' times by kind, and its opened_at."""
    from sqlmodel import Session, col, select

    from itilflow.models import Incident, TimelineEntry

    steps: dict[int, dict[str, list[datetime]]] = {}
    with Session(engine) as session:
        for incident_id, opened_at in session.exec(
            select(Incident.id, Incident.opened_at).where(col(Incident.id) > floor)
        ):
            steps[incident_id] = {"opened_at": [opened_at]}
        for incident_id, kind, at in session.exec(
            select(TimelineEntry.incident_id, TimelineEntry.kind, TimelineEntry.at).where(
                col(TimelineEntry.incident_id) > floor
            )
        ):
            steps.setdefault(incident_id, {}).setdefault(kind, []).append(at)
    return steps


# ---------------------------------------------------------------------------------- one run


def run_one(args: argparse.Namespace, open_count: int, profile: str | None) -> dict[str, Any]:
    from itilflow.demo import load_people
    from itilflow.models import create_db, get_engine
    from tests.support.http_sink import HttpSink
    from tests.support.smtp import SmtpCapture

    banner(f"{open_count} incidents open")
    tmp = temp_dir(f"processing-{open_count}")
    server = PrefectServer(tmp / "prefect")
    server_thread = threading.Thread(target=server.start, daemon=True)
    server_thread.start()
    sink, smtp = HttpSink().start(), SmtpCapture().start()
    procs: list[Any] = []
    engine = None
    try:
        apprise = write_apprise_config(tmp / "apprise.yaml", sink.apprise_url())
        env = itilflow_env(tmp / "data", smtp_port=smtp.port, apprise_config=apprise)
        settings = settings_from_env(env)
        engine = get_engine(settings.database_url)  # this process's reads
        create_db(engine)  # as `itilflow db upgrade` does
        load_people(settings)
        started = time.monotonic()
        seeded = seed_open_incidents(settings, open_count)
        print(f"seeded {open_count} open incidents in {time.monotonic() - started:.1f}s")

        gateway = Gateway(env, tmp / "gateway.log").start()
        procs.append(gateway.proc)
        server_thread.join(timeout=150)
        if not server.proc or server.startup_seconds == 0:
            raise SystemExit(f"Prefect server did not start:\n{_common.tail(server.log)}")
        procs.append(server.proc)
        runner_log = tmp / "runner.log"
        runner_env = base_env() | env | server.client_env()
        runner = spawn([PYTHON, "-m", "itilflow.cli", "runner"], env=runner_env, log=runner_log)
        procs.append(runner)

        warm = Burst(
            gateway, argparse.Namespace(**{**vars(args), "alerts": 2}), run=f"w{open_count}"
        )
        asyncio.run(warm.send())
        if wait_processed(engine, seeded, 2, 180, runner) < 2:
            raise SystemExit(f"warm-up not processed in 180 s:\n{_common.tail(runner_log)}")
        floor = seeded + 2
        time.sleep(3)  # the warm-up's events sent, the runner idle again

        spy = None
        if profile:
            target = runner.pid if profile == "runner" else server.proc.pid
            spy = spawn(
                [
                    str(Path(PYTHON).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(target),
                    "--subprocesses",
                    "--format",
                    "raw",
                    "--rate",
                    "50",
                    "--output",
                    str(tmp / "profile.raw"),
                ],
                env=base_env(),
                log=tmp / "py-spy.log",
            )
            time.sleep(1)

        watched = {"runner": runner, "server": server.proc, "gateway": gateway.proc}
        before = {name: cpu_seconds(proc.pid) for name, proc in watched.items()}
        burst = Burst(gateway, args, run=f"b{open_count}")
        asyncio.run(burst.send())
        done = wait_processed(engine, floor, len(burst.numbers), args.wait, runner)
        at_done = {name: cpu_seconds(proc.pid) for name, proc in watched.items()}
        drain_limit = time.monotonic() + 60
        while outbox_rows(engine) and time.monotonic() < drain_limit:
            time.sleep(0.5)
        left = outbox_rows(engine)
        drained = {name: cpu_seconds(proc.pid) for name, proc in watched.items()}
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)

        steps = steps_of(engine, floor)
        opened = [s["opened_at"][0] for s in steps.values()]
        ends = [
            max(s.get("notified", []) + s.get("sla_started", []))
            for s in steps.values()
            if "sla_started" in s
        ]
        missing = {
            kind: sum(1 for s in steps.values() if kind not in s)
            for kind in ("classified", "assigned", "notified", "sla_started")
        }
        n = len(burst.numbers)
        window = (max(ends) - min(opened)).total_seconds() if ends else float("nan")
        figures = {
            "open": open_count,
            "alerts": n,
            "refused": burst.refused,
            "accepted_per_s": n / max(burst.last_answer - burst.first_sent, 1e-9),
            "processed": done,
            "processed_per_s": done / window if window else float("nan"),
            "window": window,
            "missing": missing,
            "outbox_left": left,
            **{f"{name}_ms": (at_done[name] - before[name]) * 1000 / max(n, 1) for name in watched},
            **{
                f"{name}_after_ms": (drained[name] - at_done[name]) * 1000 / max(n, 1)
                for name in watched
            },
            "failed_lines": sum(
                1
                for line in runner_log.read_text(errors="replace").splitlines()
                if "failed" in line
            ),
        }
        report(figures)
        engine_report(server.api_url)  # the warm-up's two runs included
        if spy is not None:
            banner(f"py-spy of the {profile}, {open_count} open (all threads, not idle)")
            print_project_profile(tmp / "profile.raw")
        return figures
    finally:
        if engine is not None:
            engine.dispose()
        for proc in reversed(procs):
            _common.kill(proc)
        sink.stop()
        smtp.stop()


def print_project_profile(path: Path, top: int = 30) -> None:
    """From py-spy's raw stacks: the share of samples under each frame of this repository's
    code (inclusive), under SQLAlchemy's cursor.execute (the database's own work, SQLite's
    included: it runs in that call), under Prefect's and under SQLAlchemy's code."""
    import collections

    if not path.exists():
        print("  (py-spy wrote nothing; ptrace not allowed?)")
        return
    # py-spy names files relative to their sys.path entry: "dispatch/runner.py", "prefect/...".
    ours = {p.name for p in _common.ROOT.iterdir() if (p / "__init__.py").exists()} - {"tests"}
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = set()
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            file = where.rsplit(":", 1)[0]
            method = name.rpartition(".")[2]  # "DefaultDialect.do_execute"
            if method.startswith("do_execute") and file == "sqlalchemy/engine/default.py":
                frames.add("(database) cursor.execute, SQLite's work included")
            elif file.startswith("prefect/"):
                frames.add("(engine) any frame of prefect/")
            elif file.startswith(("sqlalchemy/", "sqlmodel/")):
                frames.add("(SQLAlchemy) any frame of sqlalchemy/ or sqlmodel/, the above included")
            elif file.split("/", 1)[0] in ours:
                frames.add(f"{name} ({file})")
        for frame in frames:
            inclusive[frame] += int(count)
    print(f"  {total} samples; inclusive share of this repository's frames:")
    for frame, n in inclusive.most_common(top):
        print(f"    {n / max(total, 1):6.1%}  {frame}")


def report(f: dict[str, Any]) -> None:
    print(
        f"{f['alerts']} alerts accepted ({f['refused']} refused): {f['accepted_per_s']:.0f}/s; "
        f"{f['processed']} processed in {f['window']:.1f}s: {f['processed_per_s']:.1f} incidents/s"
    )
    missing = ", ".join(f"{k} {v}" for k, v in f["missing"].items() if v) or "none"
    print(f"  steps missing: {missing}; runner log lines with 'failed': {f['failed_lines']}")
    print(
        f"  CPU per incident: runner {f['runner_ms']:.1f} ms, Prefect server "
        f"{f['server_ms']:.1f} ms, gateway {f['gateway_ms']:.1f} ms; after, until the events "
        f"were sent: runner +{f['runner_after_ms']:.1f} ms, server +{f['server_after_ms']:.1f} ms"
        + (f" ({f['outbox_left']} events still unsent)" if f["outbox_left"] else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", default="1000,50000", help="open incidents, comma-separated")
    parser.add_argument("--alerts", type=int, default=2000, help="alerts in the burst")
    parser.add_argument("--per-request", type=int, default=10, help="alerts per POST")
    parser.add_argument(
        "--severity", default="warning", help="the burst's alerts' severity (warning: P3)"
    )
    parser.add_argument("--wait", type=float, default=1200.0, help="seconds to wait for processing")
    parser.add_argument(
        "--profile",
        choices=["runner", "server"],
        help="py-spy record the runner or the Prefect server during the last count's burst",
    )
    args = parser.parse_args()
    counts = [int(text) for text in args.open.split(",")]
    results = [
        run_one(args, count, args.profile if i == len(counts) - 1 else None)
        for i, count in enumerate(counts)
    ]

    banner("summary")
    print(
        f"{'open':>7}{'accepted/s':>12}{'processed/s':>13}{'runner ms':>11}{'server ms':>11}"
        f"{'gateway ms':>12}"
    )
    for f in results:
        print(
            f"{f['open']:>7}{f['accepted_per_s']:>12.0f}{f['processed_per_s']:>13.1f}"
            f"{f['runner_ms']:>11.1f}{f['server_ms']:>11.1f}{f['gateway_ms']:>12.1f}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"{last['open']} open vs {first['open']}: processed/s x"
            f"{last['processed_per_s'] / first['processed_per_s']:.2f}, runner CPU per incident x"
            f"{last['runner_ms'] / first['runner_ms']:.2f}, server CPU per incident x"
            f"{last['server_ms'] / first['server_ms']:.2f} (goal: >= 200 incidents/s, cost x1.00)"
        )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
