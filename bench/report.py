"""The monthly health report over a large history: generation time and peak memory.

    .venv/bin/python bench/report.py [--quick] [--incidents N] [--keep DIR]

Writes N incidents (default 100,000; --quick 10,000) spread over the 12 months up to October
2026, each with a realistic timeline (opened, assigned, acknowledged, holds, escalations,
resolutions, reopens, closes: about 6 entries each), 10,000 changes (--changes), 1,000 problems
with their known-error entries (--problems) and 100,000 inspection check results (--checks) over
the same months, into a fresh SQLite database, then makes the
October report in a child process (so its memory is the report's, not the generator's) and prints:

- the SQL stages (TEMP tables, SLA under the policy, the other figures, availability, and the
  change, problem and inspection sections), each timed around its queries: the "bare SQL" time;
- compute_report (SQL + assembling the figures), HTML, PDF, and the whole;
- the same with a what-if policy (SLA computed twice);
- peak memory: the child's max RSS (SQLite's page cache and weasyprint included), and
  tracemalloc's peak of Python allocations during compute_report (measured in a separate,
  untimed run: tracemalloc slows pure-Python weasyprint down several times).

Wall and CPU seconds are both printed: on a shared machine the CPU time is the steadier figure.
Goal (issue 5): < 10 s and < 500 MB for 100,000 incidents and 10,000 changes.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)
FIRST = datetime(2025, 10, 31, 16, 0, tzinfo=UTC)  # 2025-11-01 in Shanghai
CATEGORIES = ["hardware", "software", "network", "database", "security", "account", None]
ENGINEERS = ["chen", "liu", "wang", "zhao", "sun", "zhou", "wu", "zheng"]


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(path: Path, count: int, seed: int = 7) -> int:
    """Write `count` incidents and their timelines; returns the number of timeline rows."""
    from itilflow.models import create_db, get_engine

    create_db(get_engine(f"sqlite:///{path}"))
    rng = random.Random(seed)
    span = (NOW - FIRST).total_seconds()
    cis = [f"srv-{n:03d}" for n in range(300)]
    incidents: list[tuple] = []
    timeline: list[tuple] = []
    for number in range(1, count + 1):
        opened = FIRST + timedelta(seconds=rng.random() * span)
        priority = rng.choices(["P1", "P2", "P3", "P4", None], [3, 12, 50, 34, 1])[0]
        engineer = rng.choice(ENGINEERS)
        assignment = json.dumps({"engineer": engineer})
        events: list[tuple[str, float, str]] = [("assigned", 20, assignment)]
        at = 20.0
        if rng.random() < 0.3:
            events.append(("escalated", 1800, json.dumps({"step": 0, "notify": "group"})))
        if rng.random() < 0.08:
            events.append(("escalated", 3600, json.dumps({"step": 1, "notify": "group_lead"})))
        if rng.random() < 0.03:
            engineer = rng.choice(ENGINEERS)
            events.append(("assigned", 600, json.dumps({"engineer": engineer})))
        at += rng.expovariate(1 / 1800)
        events.append(("acknowledged", at, "{}"))
        if rng.random() < 0.15:
            at += rng.expovariate(1 / 3600)
            events.append(("on_hold", at, "{}"))
            at += rng.expovariate(1 / 14400)
            events.append(("resumed", at, "{}"))
        status, resolved_at, closed_at = "acknowledged", None, None
        if rng.random() < 0.95:
            at += rng.expovariate(1 / 20000)
            events.append(("resolved", at, "{}"))
            status, resolved_at = "resolved", opened + timedelta(seconds=at)
            if rng.random() < 0.06:
                at += rng.expovariate(1 / 40000)
                events.append(("reopened", at, "{}"))
                status, resolved_at = "acknowledged", None
                if rng.random() < 0.9:
                    at += rng.expovariate(1 / 20000)
                    events.append(("resolved", at, "{}"))
                    status, resolved_at = "resolved", opened + timedelta(seconds=at)
            if status == "resolved" and rng.random() < 0.7:
                at += 3 * 86400
                events.append(("closed", at, "{}"))
                status, closed_at = "closed", opened + timedelta(seconds=at)
        incidents.append(
            (
                number,
                f"incident {number}",
                "",
                rng.choice(CATEGORIES),
                rng.choice(cis) if rng.random() < 0.8 else None,
                "api",
                priority,
                status,
                engineer,
                "{}",
                rng.choice([None, None, 5, 5, 4, 4, 3, 2, 1]),
                stamp(opened),
                stamp(opened),
                stamp(resolved_at) if resolved_at else None,
                stamp(closed_at) if closed_at else None,
            )
        )
        timeline.append((number, stamp(opened), "bench", "opened", "", "{}"))
        for kind, offset, data in events:
            timeline.append(
                (number, stamp(opened + timedelta(seconds=offset)), "bench", kind, "", data)
            )
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO incident (id, title, description, category, ci_name, source, priority, "
            "status, assignee, labels, survey_score, opened_at, updated_at, resolved_at, "
            "closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            incidents,
        )
        db.executemany(
            "INSERT INTO timelineentry (incident_id, at, actor, kind, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            timeline,
        )
    return len(timeline)


CHANGE_OUTCOMES = {
    "successful": 80,
    "rolled_back": 6,
    "rollback_failed": 1,
    "backup_failed": 2,
    "rejected": 4,
    "cancelled": 3,
    "expired": 1,
    "implementing": 1,
    "scheduled": 2,
}
CHECK_STATUSES = {"ok": 90, "warning": 6, "critical": 3, "error": 1}


def generate_processes(
    path: Path, changes: int, problems: int, checks: int, seed: int = 11
) -> None:
    """Changes (category, final status, updated_at), problems with `known_error` timeline
    entries, and inspection runs of 100 check results each, spread over the same 12 months."""
    rng = random.Random(seed)
    span = (NOW - FIRST).total_seconds()
    outcomes, weights = list(CHANGE_OUTCOMES), list(CHANGE_OUTCOMES.values())
    change_rows = []
    for number in range(1, changes + 1):
        created = FIRST + timedelta(seconds=rng.random() * span)
        updated = min(created + timedelta(seconds=rng.expovariate(1 / 259200)), NOW)
        category = rng.choices(["standard", "normal", "emergency"], [40, 52, 8])[0]
        change_rows.append(
            (
                number,
                f"change {number}",
                "",
                category,
                "[]",
                "{}",
                "api",
                1,
                rng.choices(outcomes, weights)[0],
                "[]",
                stamp(created),
                stamp(updated),
            )
        )
    problem_rows, entries = [], []
    for number in range(1, problems + 1):
        created = FIRST + timedelta(seconds=rng.random() * span)
        closed = created + timedelta(seconds=rng.expovariate(1 / (20 * 86400)))
        closed = closed if closed < NOW and rng.random() < 0.7 else None
        known = rng.random() < 0.4
        problem_rows.append(
            (
                number,
                f"problem {number}",
                "",
                "closed" if closed else "investigating",
                "ci",
                f"srv-{number:05d}",
                "[]",
                "",
                "",
                int(known),
                stamp(created),
                stamp(closed or created),
                stamp(closed) if closed else None,
            )
        )
        entries.append((number, stamp(created), "bench", "opened", "", "{}"))
        if known:
            at = created + timedelta(seconds=rng.random() * 10 * 86400)
            entries.append((number, stamp(min(at, NOW)), "bench", "known_error", "", "{}"))
    statuses, status_weights = list(CHECK_STATUSES), list(CHECK_STATUSES.values())
    targets = [f"node-{n:03d}" for n in range(100)]
    runs, results = [], []
    for run in range(1, checks // 100 + 1):
        at = stamp(FIRST + timedelta(seconds=rng.random() * span))
        runs.append((run, "all", at, at))
        for target in targets:
            # a few targets fail far more often than the others
            status = "critical" if rng.random() < (0.3 if target < "node-005" else 0.0) else None
            status = status or rng.choices(statuses, status_weights)[0]
            results.append((run, target, "http", "http", status, "", "", "{}", 1, at))
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO change (id, title, description, category, ci_names, plan, requester, "
            "version, status, risk_reasons, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            change_rows,
        )
        db.executemany(
            "INSERT INTO problem (id, title, description, status, match_kind, match_value, whys, "
            "root_cause, workaround, known_error, created_at, updated_at, closed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            problem_rows,
        )
        db.executemany(
            "INSERT INTO problementry (problem_id, at, actor, kind, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            entries,
        )
        db.executemany(
            'INSERT INTO inspectionrun (id, "group", started_at, finished_at, targets, ok, '
            "warning, critical, error) VALUES (?, ?, ?, ?, 100, 0, 0, 0, 0)",
            runs,
        )
        db.executemany(
            "INSERT INTO checkresult (run_id, target, check_name, check_type, status, unit, "
            "message, details, attempts, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            results,
        )


def measure(path: Path, what_if: Path) -> dict[str, object]:
    """The report, timed stage by stage (runs in the child process)."""
    from itilflow.models import get_engine
    from itilflow.policies import load_policies
    from itilflow.reports import compute_report, incidents, render_html, render_pdf, sections

    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started, started_cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
                cpu[name] = cpu.get(name, 0.0) + time.process_time() - started_cpu

        return wrapper

    incidents.prepare = timed("sql: TEMP tables (cohort, events, facts)", incidents.prepare)
    incidents.sla_months = timed("sql: SLA compliance", incidents.sla_months)
    incidents.incident_months = timed(
        "sql: counts, MTTA/MTTR, FCR, CSAT", incidents.incident_months
    )
    incidents._breakdown = timed("sql: categories and CIs", incidents._breakdown)
    incidents.availability = timed("sql: availability", incidents.availability)
    sections.compute_change_section = timed("sql: changes", sections.compute_change_section)
    sections.compute_problem_section = timed("sql: problems", sections.compute_problem_section)
    sections.compute_inspection_section = timed(
        "sql: inspections", sections.compute_inspection_section
    )

    engine = get_engine(f"sqlite:///{path}")
    policies = load_policies()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = compute_report(engine, policies, period="2026-10", now=NOW)
    computed, computed_cpu = time.perf_counter(), time.process_time()
    html = render_html(report, "en")
    rendered, rendered_cpu = time.perf_counter(), time.process_time()
    pdf = render_pdf(html)
    done, done_cpu = time.perf_counter(), time.process_time()
    sql_only = {name: (seconds, cpu[name]) for name, seconds in stages.items()}
    stages.clear()
    what_if_started = time.perf_counter()
    compute_report(engine, policies, period="2026-10", now=NOW, what_if_policy=what_if)
    what_if_done = time.perf_counter()
    what_if_sla = stages.get("sql: SLA compliance", 0.0)
    # Python allocations of the figures alone (tracemalloc slows everything down: not timed).
    tracemalloc.start()
    compute_report(engine, policies, period="2026-10", now=NOW)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    month = report.incidents.current
    changes = report.section("changes").data.current
    problems = report.section("problems").data.current
    inspections = report.section("inspections").data
    return {
        "stages": sql_only,
        "bare_sql": (sum(w for w, _ in sql_only.values()), sum(c for _, c in sql_only.values())),
        "compute_report": (computed - started, computed_cpu - started_cpu),
        "html": (rendered - computed, rendered_cpu - computed_cpu),
        "pdf": (done - rendered, done_cpu - rendered_cpu),
        "total": (done - started, done_cpu - started_cpu),
        "what_if_compute": what_if_done - what_if_started,
        "what_if_sla": what_if_sla,
        "pdf_bytes": len(pdf),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python_peak_mb": python_peak / 2**20,
        "october": {
            "opened": month.opened,
            "response": month.sla.response.rate,
            "resolution": month.sla.resolution.rate,
            "mttr_median_h": (month.mttr.median or 0) / 3600,
        },
        "october_processes": {
            "changes": changes.changes,
            "success_rate": changes.success_rate,
            "rollback_rate": changes.rollback_rate,
            "emergency_rate": changes.emergency_rate,
            "not_implemented": changes.not_implemented,
            "problems_opened": problems.opened,
            "problems_closed": problems.closed,
            "known_errors": problems.known_errors,
            "check_results": inspections.current.results,
            "pass_rate": inspections.current.pass_rate,
            "most_failing": [(t.target, t.failing) for t in inspections.failing_targets],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 incidents")
    parser.add_argument("--incidents", type=int, default=None)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--problems", type=int, default=1_000)
    parser.add_argument("--checks", type=int, default=100_000, help="inspection check results")
    parser.add_argument("--keep", type=Path, default=None, help="keep the database in DIR")
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--what-if", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.what_if)))
        return

    count = args.incidents or (10_000 if args.quick else 100_000)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="itilflow-bench-report-"))
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "report.db"
    database.unlink(missing_ok=True)
    from itilflow.policies import default_policy_dir

    strict = folder / "sla.yaml"
    strict.write_text(
        default_policy_dir()
        .joinpath("sla.yaml")
        .read_text(encoding="utf-8")
        .replace("P2: {response: 1h, resolution: 8h", "P2: {response: 30m, resolution: 4h")
    )
    try:
        started = time.perf_counter()
        rows = generate(database, count)
        generate_processes(database, args.changes, args.problems, args.checks)
        print(
            f"generated {count:,} incidents, {rows:,} timeline rows, {args.changes:,} changes, "
            f"{args.problems:,} problems, {args.checks // 100 * 100:,} check results over 12 "
            f"months in {time.perf_counter() - started:.1f} s "
            f"({database.stat().st_size / 2**20:.0f} MB)"
        )
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(database), "--what-if", str(strict)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"report for 2026-10 (7 months of history: {result['october']})")
        print(f"  changes, problems, inspections in 2026-10: {result['october_processes']}")
        print(f"  {'':<42} {'wall':>8} {'CPU':>8}")
        rows = [
            *result["stages"].items(),
            ("bare SQL, all stages", result["bare_sql"]),
            ("compute_report (SQL + figures)", result["compute_report"]),
            ("render HTML", result["html"]),
            ("render PDF (weasyprint)", result["pdf"]),
            ("total (goal < 10 s)", result["total"]),
        ]
        for name, (wall, cpu) in rows:
            print(f"  {name:<42} {wall:6.2f} s {cpu:6.2f} s")
        print(
            f"  {'what-if compute (SLA twice)':<42} {result['what_if_compute']:6.2f} s "
            f"(its two SLA passes {result['what_if_sla']:.2f} s)"
        )
        print(
            f"  peak memory: {result['max_rss_mb']:.0f} MB max RSS of the report process "
            f"(goal < 500 MB); compute_report's Python allocations peak at "
            f"{result['python_peak_mb']:.1f} MB"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
