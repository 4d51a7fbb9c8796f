"""Approval to implementation: the code POST /approvals/{token} -> first step started.

    .venv/bin/python bench/change_approval.py [--quick]

Starts, in a temp dir: a Prefect server (`prefect server start`, SQLite), an SMTP capture
(aiosmtpd, in this process) and the gateway (uvicorn in a thread of this process), whose change
engine runs each change flow in a thread of this process as tests/changes/conftest.py does;
resuming goes through the Prefect API as in production.

Then, one change after another (10; --quick: 3), with the window open (no planned_start): open a
normal low-risk change over the API (a backup pre-step and one step), wait for the approval mail to
chen and for the run to end (a waiting change holds no run), wait a moment as a person would, POST
the mail's approve link (what the confirmation page's button sends: it mails chen a one-time code),
read the code from the SMTP capture, POST it (what the code page's button sends: this decides) and
wait for the change to finish. Prints, per change and as p50/max, the seconds from the press to the
code mail, and from the code POST to the first implementation step starting (the timeline entry
"backup_started" or "step_started", its `at`), and where that time goes, from the timeline and what
the Prefect server recorded (flow run states, task runs), with the Prefect API's "503 database is
locked" answers this process got (each costs ~2 s of client back-off).
Goal: <= 5 s.

--inline-implementation (experiment): patches, in this process only, the change flow to run the
implementation in its own run (`implement_change.fn`) instead of as a subflow run.
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import os
import re
import statistics
import sys
import threading
import time
from datetime import datetime
from typing import Any

import _common
import httpx
from _common import PrefectServer, banner, free_port, percentile, temp_dir

from tests.support.approval_codes import codes_sent_to, wait_for_code
from tests.support.csrf import post_form

GOAL_SECONDS = 5.0
CHANGE_LIMIT = 60.0  # seconds for one change to reach a final status after the POST
THINK_SECONDS = 0.5  # the approver reads the confirmation page before pressing the button
FINAL = {"successful", "rolled_back", "rollback_failed", "backup_failed", "crashed"}


class ApiRetries(logging.Handler):
    """When this process got "503 Service Unavailable" from the Prefect server: its SQLite
    answered "database is locked" and Prefect's client waits about 2**n s, then tries again."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.requests: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " 503 " in message:
            self.times.append(record.created)
            found = re.search(r"Request: (\w+) http://[^/]+(/\S*)", message)
            what = re.sub(r"[0-9a-f-]{36}", "{id}", " ".join(found.groups())) if found else "?"
            self.requests[what] = self.requests.get(what, 0) + 1

    def attach(self) -> ApiRetries:
        log = logging.getLogger("httpx")  # one INFO line per request
        log.addHandler(self)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t <= end)


def drain_prefect() -> None:
    """Send Prefect's queued events and logs while the server still runs (else they fail at
    exit with "Error logging to API")."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        EventsWorker.drain_all(timeout=10)
        APILogWorker.drain_all(timeout=10)
    except Exception as exc:  # noqa: BLE001 (best effort on the way out)
        print(f"  (could not drain Prefect's queues: {exc})")


def ts(value: str | None) -> float | None:
    """An ISO timestamp (the API's `at`, Prefect's times) as epoch seconds."""
    return datetime.fromisoformat(value).timestamp() if value else None


def wait_for(what: str, check: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


class Prefect:
    """The few Prefect REST calls this benchmark reads (after the runs, not while timing)."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=30, trust_env=False)

    def state_type(self, flow_run_id: str) -> str | None:
        state = self.http.get(f"/flow_runs/{flow_run_id}").json().get("state") or {}
        return state.get("type")

    def states(self, flow_run_id: str) -> list[dict[str, Any]]:
        rows = self.http.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
        return sorted(rows, key=lambda s: s["timestamp"])

    def flow_run_named(self, name: str) -> dict[str, Any] | None:
        rows = self.http.post(
            "/flow_runs/filter", json={"flow_runs": {"name": {"any_": [name]}}, "limit": 5}
        ).json()
        return rows[0] if rows else None

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        rows = self.http.post(
            "/task_runs/filter",
            json={"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200},
        ).json()
        return sorted(rows, key=lambda t: t.get("start_time") or t["expected_start_time"] or "")


def first_task(runs: list[dict[str, Any]], prefix: str, after: float) -> dict[str, Any] | None:
    """The first task run named `prefix...` that started after `after` (epoch seconds)."""
    for run in runs:
        start = ts(run.get("start_time"))
        if run["name"].startswith(prefix) and start is not None and start >= after:
            return run
    return None


def plan(work: str, index: int) -> dict[str, Any]:
    target = f"{work}/change-{index}.txt"
    return {
        "backup": [{"name": "save", "do": {"kind": "shell", "command": f"touch {target}"}}],
        "steps": [
            {
                "name": "apply",
                "do": {"kind": "shell", "command": f"echo applied >> {target}"},
                "undo": {"kind": "shell", "command": f"rm -f {target}"},
            }
        ],
    }


def approve_link(smtp: Any, number: str, address: str) -> str:
    def find() -> str | None:
        for mail in smtp.mails:
            if address in mail.rcpt_tos and number in str(mail.message["Subject"]):
                text = mail.message.get_body(("plain",)).get_content()
                found = re.search(r"(http://\S+/approvals/[^\s?]+)\?decision=approve", text)
                return found.group(1) if found else None
        return None

    return wait_for(f"the approval mail for {number}", find, timeout=30)


def measure_one(
    index: int, gateway: httpx.Client, smtp: Any, prefect: Prefect, work: str, engine: Any
) -> dict[str, Any]:
    created = gateway.post(
        "/api/changes",
        json={"title": f"bench change {index}", "category": "normal", "plan": plan(work, index)},
    )
    created.raise_for_status()
    number, change_id = created.json()["number"], created.json()["id"]
    link = approve_link(smtp, number, "chen@example.com")
    run_id = wait_for(
        "the run id",
        lambda: gateway.get(f"/api/changes/{number}").json()["flow_run_id"],
        timeout=30,
    )
    # The first run ends once the approval mails are out: the change waits as rows.
    wait_for("the first run to end", lambda: prefect.state_type(run_id) == "COMPLETED", timeout=30)
    time.sleep(THINK_SECONDS)

    form = {"decision": "approve", "comment": ""}
    sent = len(codes_sent_to(smtp, "chen@example.com"))
    pressed_at = time.time()
    browser = httpx.Client(trust_env=False)  # keeps the page's CSRF cookie, as a browser does
    pressed = post_form(browser, link, form)
    if pressed.status_code != 200:
        raise RuntimeError(f"{number}: the button's POST answered {pressed.status_code}")
    code = wait_for_code(smtp, "chen@example.com", nth=sent + 1, timeout=30)
    code_mail = time.time() - pressed_at
    time.sleep(THINK_SECONDS)  # the approver copies the code from the mail

    t0 = time.time()
    answer = post_form(browser, link, form | {"code": code})
    t1 = time.time()
    browser.close()
    if answer.status_code != 200 or "recorded" not in answer.text:
        raise RuntimeError(f"{number}: the approval POST answered {answer.status_code}")
    thread = engine.threads_by_change[change_id]
    thread.join(timeout=CHANGE_LIMIT)
    status = gateway.get(f"/api/changes/{number}").json()["status"]
    if status not in FINAL:
        raise RuntimeError(f"{number} is still {status} {CHANGE_LIMIT:.0f}s after the approval")
    return {
        "number": number,
        "run_id": run_id,
        "t0": t0,
        "t1": t1,
        "status": status,
        "code_mail": code_mail,
    }


def breakdown(
    row: dict[str, Any], gateway: httpx.Client, prefect: Prefect, retries: ApiRetries
) -> dict[str, Any]:
    """Seconds from the POST (t0) to each mark on the way to the first step."""
    t0 = row["t0"]
    entries = gateway.get(f"/api/changes/{row['number']}/timeline").json()

    def entry(kind: str, actor: str | None = None, kinds: tuple[str, ...] = ()) -> float | None:
        for e in entries:
            at = ts(e["at"])
            if at is None or at < t0 - 0.001:
                continue
            if (e["kind"] == kind or e["kind"] in kinds) and (actor is None or e["actor"] == actor):
                return at - t0
        return None

    marks: dict[str, float | None] = {
        "decided": entry("approved", actor="chen"),
        "post_returned": row["t1"] - t0,
    }
    # The decision's run: the one that implemented the change (it owns it now).
    run_id = gateway.get(f"/api/changes/{row['number']}").json()["flow_run_id"] or row["run_id"]
    resumed = [
        ts(s["timestamp"])
        for s in prefect.states(run_id)
        if s["type"] == "RUNNING" and (ts(s["timestamp"]) or 0) >= t0 - 0.001
    ]
    marks["resumed"] = resumed[0] - t0 if resumed and resumed[0] is not None else None
    tasks = prefect.task_runs(run_id)
    noticed = first_task(tasks, "approval-step", t0)
    marks["noticed"] = ts(noticed["start_time"]) - t0 if noticed else None  # type: ignore[operator]
    marks["approved"] = entry("approved", actor="flow:change")
    window = first_task(tasks, "check-window", t0)
    marks["window_checked"] = (
        ts(window["end_time"]) - t0 if window and window.get("end_time") else None  # type: ignore[operator]
    )
    sub = prefect.flow_run_named(f"implement {row['number']} v1")
    marks["subflow_started"] = (
        ts(sub["start_time"]) - t0 if sub and sub.get("start_time") else None  # type: ignore[operator]
    )
    marks["implementation_started"] = entry("implementation_started")
    marks["first_step"] = entry("", kinds=("backup_started", "step_started"))
    end = t0 + (marks["first_step"] or CHANGE_LIMIT)
    marks["retries"] = retries.between(t0, end)
    return marks


MARKS = [
    ("decided", "decision stored (gateway, UPDATE + timeline)"),
    ("resumed", "the decision's run RUNNING (gateway -> engine start)"),
    ("post_returned", "POST answered"),
    ("noticed", "approval-step starts in the new run"),
    ("approved", "approval_step wrote 'approved'"),
    ("window_checked", "check_window done"),
    ("subflow_started", "implement-change subflow running"),
    ("implementation_started", "begin_implementation wrote 'implementation_started'"),
    ("first_step", "first step started (backup_started/step_started)"),
]


def fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.2f}"


def report(rows: list[dict[str, Any]], marks: list[dict[str, Any]], retries: ApiRetries) -> None:
    mailed = [row["code_mail"] for row in rows]
    banner("button POST -> code mail in the SMTP capture (seconds)")
    print(
        f"  n={len(mailed)} p50={percentile(mailed, 50):.2f}s max={max(mailed):.2f}s  each: "
        + ", ".join(f"{v:.2f}" for v in mailed)
    )
    banner("code POST /approvals/{token} -> first implementation step (seconds)")
    print("  change       " + " ".join(f"{name[:7]:>7}" for name, _ in MARKS) + "  503s  status")
    for row, m in zip(rows, marks, strict=True):
        cells = " ".join(f"{fmt(m[name]):>7}" for name, _ in MARKS)
        print(f"  {row['number']}   {cells}  {m['retries']:4d}  {row['status']}")
    latencies = [m["first_step"] for m in marks if m["first_step"] is not None]
    print()
    print(
        f"  code POST -> first step: n={len(latencies)} p50={percentile(latencies, 50):.2f}s "
        f"max={max(latencies, default=float('nan')):.2f}s  (goal <= {GOAL_SECONDS:.0f}s: "
        f"{'met' if latencies and max(latencies) <= GOAL_SECONDS else 'NOT met'})"
    )
    print("  each: " + ", ".join(f"{v:.2f}" for v in latencies))
    hit = [m for m in marks if m["retries"]]
    print(
        f"  Prefect API 503s (SQLite 'database is locked', retried after ~2s) between the POST "
        f"and the first step: {sum(m['retries'] for m in marks)} in {len(hit)} of {len(marks)} "
        "changes"
    )
    if retries.requests:
        print(
            "  503s by request (the whole run): "
            + ", ".join(f"{what} x{n}" for what, n in sorted(retries.requests.items()))
        )
    clean = [m["first_step"] for m in marks if not m["retries"] and m["first_step"] is not None]
    if clean:
        print(
            f"  without a 503: n={len(clean)} p50={percentile(clean, 50):.2f}s "
            f"max={max(clean):.2f}s"
        )

    banner("where the time goes (median over the changes, seconds after the POST)")
    print("  at      +step   mark")
    previous: str | None = None
    for name, label in MARKS:
        values = [m[name] for m in marks if m[name] is not None]
        if not values:
            print(f"  {'-':>5}           {label}")
            continue
        if name == "post_returned":
            print(f"  {statistics.median(values):5.2f}           {label}")
            continue
        before = previous
        gaps = [
            m[name] - (m[before] if before else 0.0)
            for m in marks
            if m[name] is not None and (before is None or m[before] is not None)
        ]
        print(f"  {statistics.median(values):5.2f}  +{statistics.median(gaps):5.2f}   {label}")
        previous = name


class Peers:
    """The SMTP capture and the gateway thread, stopped in `close`."""

    def __init__(self) -> None:
        self.smtp: Any = None
        self.server: Any = None
        self.thread: threading.Thread | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.smtp is not None:
            self.smtp.stop()


def start_gateway(peers: Peers, home: Any) -> tuple[Any, Any, Any]:
    """The gateway in a thread of this process (uvicorn) on a fresh database with the demo's
    people, an SMTP capture for its mails (both kept in `peers` for stopping), and a change
    engine that runs each change's flow in a thread of this process, as tests/changes/conftest.py
    does. Call once PREFECT_API_URL is set. Returns (settings, runtime, engine)."""
    import asyncio
    import secrets

    import uvicorn
    from pydantic import SecretStr

    from itilflow import runtime
    from itilflow.demo import load_people
    from itilflow.engine import PrefectChangeEngine
    from itilflow.flows.change import manage_change
    from itilflow.gateway.app import create_app
    from itilflow.models import create_db, get_engine
    from itilflow.settings import Settings
    from tests.support.change_policy import without_calendar
    from tests.support.smtp import SmtpCapture

    class InProcessChangeEngine(PrefectChangeEngine):
        def __init__(self) -> None:
            self.threads_by_change: dict[int, threading.Thread] = {}

        async def start(self, change_id: int) -> str | None:
            context = contextvars.copy_context()

            def target() -> None:
                context.run(asyncio.run, manage_change(change_id))

            thread = threading.Thread(target=target, name=f"change-{change_id}", daemon=True)
            thread.start()
            self.threads_by_change[change_id] = thread
            return None

    peers.smtp = SmtpCapture().start()
    port = free_port()
    settings = Settings(
        data_dir=home / "data",
        api_token=SecretStr(secrets.token_urlsafe(32)),
        secret_key=SecretStr(secrets.token_urlsafe(32)),
        smtp_host="127.0.0.1",
        smtp_port=peers.smtp.port,
        smtp_timeout=5.0,
        public_url=f"http://127.0.0.1:{port}",
    )
    rt = runtime.configure(settings)
    without_calendar(rt)  # no planned start, no windows: approved means implemented now
    create_db(get_engine(rt.settings.database_url))  # as `itilflow db upgrade` does
    load_people(settings)
    engine = InProcessChangeEngine()
    app = create_app(settings, rt.policies, change_engine=engine)
    peers.server = uvicorn.Server(
        uvicorn.Config(app=app, host="127.0.0.1", port=port, log_level="warning")
    )
    peers.thread = threading.Thread(target=peers.server.run, daemon=True)
    peers.thread.start()
    return settings, rt, engine


def run(args: argparse.Namespace) -> None:
    home = temp_dir("change-approval")
    banner("starting a Prefect server")
    server = PrefectServer(home / "prefect").start()
    print(f"  {server.api_url} up in {server.startup_seconds:.1f}s")
    os.environ.update(server.client_env())
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    # Only now: these read PREFECT_API_URL when first used, and Prefect configures its logging
    # on import, which must come before ApiRetries listens to httpx's lines.
    import itilflow.flows.change  # noqa: F401

    retries = ApiRetries().attach()
    if args.inline_implementation:
        import itilflow.flows.change as change_flows

        subflow = change_flows.implement_change

        async def inline(change_id: int, version: int) -> str:
            # The proposed fix, tried in this process only: the implementation runs in the
            # change run itself instead of as a subflow run (no flow run to create).
            return await subflow.fn(change_id, version)

        change_flows.implement_change = inline  # type: ignore[assignment]
        print("  EXPERIMENT: implementation inline in the change run (no subflow)")

    peers = Peers()
    try:
        settings, rt, engine = start_gateway(peers, home)
        assert settings.api_token is not None
        gateway = httpx.Client(
            base_url=settings.public_url or "",
            trust_env=False,
            timeout=30,
            headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
        )

        def healthy() -> bool:
            try:
                return gateway.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the gateway", healthy, timeout=20, interval=0.2)
        prefect = Prefect(server.api_url)
        work = str(home / "work")
        os.makedirs(work, exist_ok=True)

        count = 3 if args.quick else args.changes
        banner(f"{count} changes, approved one after another (window open)")
        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        for index in range(1, count + 1):
            row = measure_one(index, gateway, peers.smtp, prefect, work, engine)
            rows.append(row)
            print(
                f"  {row['number']} {row['status']} (POST answered in {row['t1'] - row['t0']:.2f}s)"
            )
            if time.monotonic() - started > args.budget:
                print(f"  stopping early: over the {args.budget:.0f}s budget")
                break
        time.sleep(2)  # task runs reach the server as events: let the last ones land
        report(rows, [breakdown(row, gateway, prefect, retries) for row in rows], retries)
        gateway.close()
    finally:
        peers.close()
        if "prefect" in sys.modules:
            drain_prefect()
        _common.kill_children()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 changes")
    parser.add_argument("--changes", type=int, default=10, help="changes in full mode")
    parser.add_argument("--budget", type=float, default=600, help="stop adding changes after")
    parser.add_argument(
        "--inline-implementation",
        action="store_true",
        help="experiment: run the implementation in the change run, not as a subflow "
        "(patched in this process only)",
    )
    args = parser.parse_args()
    print(
        f"change approval benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{'quick' if args.quick else 'full'} mode"
        f"{', inline implementation' if args.inline_implementation else ''}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: child processes stopped")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
