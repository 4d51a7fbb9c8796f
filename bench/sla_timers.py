"""SLA timers: do deadlines fire on time, never early, never missed, through a runner restart?

    .venv/bin/python bench/sla_timers.py [--quick] [--variants plain,restart] [--concurrency N]

Starts a Prefect server (`prefect server start`, SQLite), a chat sink and an SMTP server, then
for each variant, on a fresh itilflow database:

  * writes N open P1 incidents (an 'opened' timeline entry, status assigned, no escalation
    snapshot, so sync_triggers plans no escalation of its own) each with one FlowTrigger kind
    "escalation" key "escalation:0:0", data {"step": 0, "repeat": 0, "notify": "on_call"},
    due_at spread uniformly over SPAN seconds starting LEAD seconds from now (full: 1,000
    over 180 s; --quick: 100 over 60 s);
  * runs the runner as `python -m itilflow.cli runner` (concurrency 2 unless --concurrency);
  * restart variant: SIGKILLs the runner half-way through the span and starts it again
    --restart-pause seconds later (default 1 s, as a supervisor such as systemd would);
  * failover variant: two runners (each with its own name); one is SIGKILLed half-way through
    the span and stays down: the other takes its unclaimed work at once and its claims when
    their lease (20 s, renewed while a run lasts) ends;
  * waits until every trigger is done or GRACE seconds after the last due time.

Printed per variant: lateness of the action (timeline 'escalated' entry time - due_at, and
done_at - due_at) p50/p99/max, early actions (entry before due_at), missed (not done by the end),
fired twice (more than one 'escalated' entry per trigger), incidents paged twice (more than
one chat message naming them: sent, then killed before it was recorded), the achieved
flow-run rate, and the goals: p99 <= 10 s late, 0 missed, 0 early, 0 twice.
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import sqlite3
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _common
from _common import (
    PYTHON,
    PrefectServer,
    banner,
    base_env,
    cpu_seconds,
    itilflow_env,
    percentile,
    settings_from_env,
    spawn,
    summary,
    temp_dir,
    write_apprise_config,
)

LEAD = 20.0  # seconds from setup to the first deadline
GRACE = 45.0  # seconds after the last deadline before counting what is left as missed


def seed(settings: Any, count: int, start: datetime, span: float) -> None:
    from itilflow.models import (
        Incident,
        IncidentStatus,
        add_timeline,
        add_trigger,
        get_engine,
        session_scope,
    )

    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        for i in range(count):
            incident = Incident(
                title=f"bench timer {i}",
                priority="P1",
                status=IncidentStatus.assigned,
                escalation=None,
                source="bench",
            )
            session.add(incident)
            session.flush()
            assert incident.id is not None
            # The message templates need the SLA figures, which need an 'opened' event.
            add_timeline(session=session, incident_id=incident.id, kind="opened", actor="bench")
            due = start + timedelta(seconds=span * i / max(count - 1, 1))
            add_trigger(
                session=session,
                incident_id=incident.id,
                kind="escalation",
                key="escalation:0:0",
                due_at=due,
                data={"step": 0, "repeat": 0, "notify": "on_call"},
            )


def utc(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def collect(db: Path) -> dict[str, Any]:
    """Per trigger: due, done, cancelled, and the 'escalated' timeline entries of its incident."""
    import json

    with sqlite3.connect(db) as conn:
        triggers = conn.execute(
            "SELECT id, incident_id, key, due_at, done_at, cancelled_at FROM flowtrigger "
            "WHERE kind = 'escalation'"
        ).fetchall()
        entries = conn.execute(
            "SELECT incident_id, at, data FROM timelineentry WHERE kind = 'escalated'"
        ).fetchall()
        other = conn.execute(
            "SELECT kind, count(*) FROM flowtrigger WHERE kind != 'escalation' GROUP BY kind"
        ).fetchall()
        failures = conn.execute(
            "SELECT count(*) FROM timelineentry WHERE kind = 'flow_failed'"
        ).fetchone()[0]
    fired: dict[tuple[int, str], list[tuple[datetime, dict[str, Any]]]] = {}
    for incident_id, at, data in entries:
        payload = json.loads(data) if data else {}
        fired.setdefault((incident_id, payload.get("key", "")), []).append((utc(at), payload))
    return {"triggers": triggers, "fired": fired, "other": other, "failures": failures}


def analyse(name: str, data: dict[str, Any], elapsed_rate: float) -> dict[str, Any]:
    late_action: list[float] = []
    late_done: list[float] = []
    late_recorded: list[float] = []
    early = missed = twice = cancelled = 0
    for _id, incident_id, key, due_s, done_s, cancelled_s in data["triggers"]:
        due, done = utc(due_s), utc(done_s)
        assert due is not None
        if cancelled_s is not None:
            cancelled += 1
        entries = data["fired"].get((incident_id, key), [])
        if len(entries) > 1:
            twice += 1
        if done is None:
            missed += 1
        else:
            late_done.append((done - due).total_seconds())
        if entries:
            first_at, payload = min(entries, key=lambda e: e[0])
            late_action.append((first_at - due).total_seconds())
            if "late_seconds" in payload:
                late_recorded.append(float(payload["late_seconds"]))
            if first_at < due:
                early += 1
    n = len(data["triggers"])
    print(f"{name}: {n} timers")
    print(f"  late, 'escalated' entry - due_at  {summary(late_action)}")
    print(f"  late, done_at - due_at            {summary(late_done)}")
    print(f"  late, recorded late_seconds       {summary(late_recorded)}")
    print(
        f"  early {early}, missed (not done {GRACE:.0f}s after the last due) {missed}, "
        f"fired twice {twice}, cancelled {cancelled}, flow_failed entries {data['failures']}"
    )
    if data["other"]:
        print(f"  other triggers sync_triggers added: {dict(data['other'])}")
    print(f"  flow runs completed per second while behind: {elapsed_rate:.2f}")
    p99 = percentile(late_action, 99) if late_action else float("inf")
    met = p99 <= 10 and not missed and not early and not twice
    print(f"  goal (p99 <= 10 s, 0 missed, 0 early, 0 twice): {'met' if met else 'MISSED'}")
    return {
        "p50": percentile(late_action, 50) if late_action else float("nan"),
        "p99": p99,
        "max": max(late_action) if late_action else float("nan"),
        "early": early,
        "missed": missed,
        "twice": twice,
        "rate": elapsed_rate,
        "met": met,
    }


def done_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM flowtrigger WHERE kind='escalation' AND done_at IS NOT NULL"
        ).fetchone()[0]


def run_variant(
    name: str,
    *,
    tmp: Path,
    server: PrefectServer,
    smtp_port: int,
    apprise: Path,
    count: int,
    span: float,
    concurrency: int,
    mode: str,
    restart_pause: float,
    sink: Any,
) -> dict[str, Any]:
    restart = mode == "restart"
    sink.clear()
    banner(f"{name}: {count} timers over {span:.0f}s, runner concurrency {concurrency}")
    data_dir = tmp / name
    env = itilflow_env(
        data_dir,
        smtp_port=smtp_port,
        apprise_config=apprise,
        runner_concurrency=str(concurrency),
    )
    settings = settings_from_env(env)
    from itilflow.models import create_db, get_engine

    create_db(get_engine(settings.database_url))
    db = data_dir / "itilflow.db"
    runner_env = base_env() | env | server.client_env()
    log = data_dir / "runner.log"

    def start_runner(name: str = "bench:runner-1") -> Any:
        env = runner_env | {"ITILFLOW_RUNNER_NAME": name}
        return spawn([PYTHON, "-m", "itilflow.cli", "runner"], env=env, log=log)

    start = datetime.now(UTC) + timedelta(seconds=LEAD)
    t_seed = time.monotonic()
    seed(settings, count, start, span)
    print(f"  seeded {count} incidents + triggers in {time.monotonic() - t_seed:.1f}s")
    runner = start_runner()
    survivor = start_runner("bench:runner-2") if mode == "failover" else None
    cpu_before = 0.0
    first_due = time.monotonic() + (start - datetime.now(UTC)).total_seconds()
    last_due = first_due + span
    killed = False
    restarted_at = None
    progress_at = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        now = time.monotonic()
        done = done_count(db)
        samples.append((now, done))
        if done >= count or now > last_due + GRACE:
            break
        if mode != "plain" and not killed and now >= first_due + span / 2:
            cpu_before = cpu_seconds(runner.pid)
            _common.kill(runner, sig=signal.SIGKILL)
            killed = True
            print(f"  SIGKILLed the runner at +{now - first_due:.0f}s ({done} done)", flush=True)
            restarted_at = now + restart_pause if restart else None
        if restarted_at is not None and now >= restarted_at:
            runner = start_runner()
            print(f"  runner started again at +{now - first_due:.0f}s", flush=True)
            restarted_at = None
        if now - progress_at >= 30:
            behind = (
                sum(1 for i in range(count) if first_due + span * i / max(count - 1, 1) <= now)
                - done
            )
            print(f"  +{now - first_due:4.0f}s: {done} done, {behind} due and not done", flush=True)
            progress_at = now
        time.sleep(0.5)
    runner_cpu = cpu_before + (cpu_seconds(runner.pid) if runner.poll() is None else 0.0)
    if survivor is not None:
        runner_cpu += cpu_seconds(survivor.pid)
        _common.kill(survivor)
    _common.kill(runner)
    # Achieved rate: completions per second over the time the runner had work due.
    busy_from = first_due
    finished = samples[-1][0]
    rate = samples[-1][1] / max(finished - busy_from - (restart_pause if restart else 0), 1e-9)
    print(
        f"  runner CPU {runner_cpu:.0f}s over {finished - t_seed:.0f}s "
        f"({runner_cpu / max(samples[-1][1], 1):.2f}s per timer)"
    )
    result = analyse(name, collect(db), rate)
    numbers = collections.Counter(
        number
        for request in sink.requests
        for number in set(re.findall(r"INC-\d{6}", request.body.decode(errors="replace")))
    )
    result["chat_twice"] = sum(1 for n in numbers.values() if n > 1)
    print(
        f"  chat messages {sum(numbers.values())} for {len(numbers)} incidents; "
        f"incidents paged more than once: {result['chat_twice']}"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 timers over 60 s, plain only")
    parser.add_argument("--count", type=int)
    parser.add_argument("--span", type=float)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--variants", help="comma-separated: plain,restart,failover")
    parser.add_argument("--restart-pause", type=float, default=1.0)
    args = parser.parse_args()
    count = args.count or (100 if args.quick else 1000)
    span = args.span or (60.0 if args.quick else 180.0)
    variants = (args.variants or ("plain" if args.quick else "plain,restart,failover")).split(",")

    tmp = temp_dir("timers")
    from tests.support.http_sink import HttpSink
    from tests.support.smtp import SmtpCapture

    server = PrefectServer(tmp / "prefect")
    thread = threading.Thread(target=server.start, daemon=True)
    thread.start()
    with HttpSink() as sink, SmtpCapture() as smtp:
        apprise = write_apprise_config(tmp / "apprise.yaml", sink.apprise_url())
        thread.join(timeout=150)
        if server.startup_seconds == 0:
            raise SystemExit(f"Prefect server did not start:\n{_common.tail(server.log)}")
        print(f"Prefect server answered /api/health after {server.startup_seconds:.1f}s")
        results = {}
        for variant in variants:
            results[variant] = run_variant(
                variant,
                tmp=tmp,
                server=server,
                smtp_port=smtp.port,
                apprise=apprise,
                count=count,
                span=span,
                concurrency=args.concurrency,
                mode=variant,
                restart_pause=args.restart_pause,
                sink=sink,
            )

    banner("summary")
    print(
        f"{'variant':<9}{'late p50':>10}{'late p99':>10}{'late max':>10}"
        f"{'early':>7}{'missed':>8}{'twice':>7}{'paged 2x':>9}{'runs/s':>8}  goal"
    )
    for name, r in results.items():
        print(
            f"{name:<9}{r['p50']:>9.1f}s{r['p99']:>9.1f}s{r['max']:>9.1f}s{r['early']:>7}"
            f"{r['missed']:>8}{r['twice']:>7}{r['chat_twice']:>9}{r['rate']:>8.2f}  "
            f"{'met' if r['met'] else 'MISSED'}"
        )
    needed = count / span
    rates = [r["rate"] for r in results.values()]
    print(
        f"needed {needed:.1f} timers/s on average ({count} in {span:.0f}s); achieved "
        f"{statistics.median(rates):.2f}/s: "
        + ("enough" if statistics.median(rates) >= needed else "the engine is the limit")
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
    finally:
        _common.kill_children()
