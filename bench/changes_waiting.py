"""500 changes awaiting approval: what they add to the stack, and how fast they move.

    .venv/bin/python bench/changes_waiting.py [--changes 500] [--approve 5] [--quick]

Starts, in a temp dir, what bench/change_approval.py starts: a Prefect server (`prefect server
start`, SQLite, a process of its own), an SMTP capture and the gateway in this process, whose
change engine runs each change run in a thread of this process (a worker runs it as a
subprocess in production; either way the run ends once the approval mails are out).

Then: one warm-up change, approved, so that every code path is loaded; the RSS of this process
and of the Prefect server; N normal low-risk changes submitted over the API one after another,
each timed from the POST to its approval mail in the SMTP capture; once every run has ended,
the RSS again, and the flow runs the server still has running or paused (none: waiting costs
rows). Last, K of the waiting changes are approved as an approver does (the link's button mails
a code, the code's POST decides), each timed from the code POST to its first implementation step
(the timeline's "backup_started"/"step_started").

Goals (issue 13): the 500 waiting changes add < 100 MB; approval to implementation start <= 5 s;
submission to the first approval mail <= 5 s. Prints medians and p95.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import _common
import httpx
from _common import PrefectServer, banner, percentile, temp_dir
from change_approval import (
    THINK_SECONDS,
    Peers,
    Prefect,
    approve_link,
    drain_prefect,
    plan,
    start_gateway,
    ts,
    wait_for,
)

from tests.support.approval_codes import codes_sent_to, wait_for_code
from tests.support.csrf import post_form

GOAL_MB = 100.0
GOAL_SECONDS = 5.0
FINAL = {"successful", "rolled_back", "rollback_failed", "backup_failed", "crashed"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stack_rss(server: PrefectServer) -> dict[str, float]:
    gc.collect()
    return {"bench (gateway + engine)": rss_mb(os.getpid()), "prefect server": server_rss(server)}


def server_rss(server: PrefectServer) -> float:
    """The server's process and its children (uvicorn workers, if any)."""
    pid = server.proc.pid
    total = rss_mb(pid)
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for child_pid in child.read_text().split():
            total += rss_mb(int(child_pid))
    return total


def submit(gateway: httpx.Client, smtp: Any, work: str, index: int) -> tuple[str, int, float]:
    """POST a change; the seconds to its approval mail for chen."""
    t0 = time.time()
    created = gateway.post(
        "/api/changes",
        json={"title": f"waiting change {index}", "category": "normal", "plan": plan(work, index)},
    )
    created.raise_for_status()
    number, change_id = created.json()["number"], created.json()["id"]
    approve_link(smtp, number, "chen@example.com")
    return number, change_id, time.time() - t0


def approve(gateway: httpx.Client, smtp: Any, number: str, engine: Any, change_id: int) -> float:
    """The approver's two POSTs; the seconds from the code POST to the first step."""
    link = approve_link(smtp, number, "chen@example.com")
    form = {"decision": "approve", "comment": ""}
    sent = len(codes_sent_to(smtp, "chen@example.com"))
    with httpx.Client(trust_env=False) as browser:  # keeps the page's CSRF cookie
        pressed = post_form(browser, link, form)
        if pressed.status_code != 200:
            raise RuntimeError(f"{number}: the button answered {pressed.status_code}")
        code = wait_for_code(smtp, "chen@example.com", nth=sent + 1, timeout=30)
        time.sleep(THINK_SECONDS)  # the approver copies the code from the mail
        t0 = time.time()
        answer = post_form(browser, link, form | {"code": code})
    if answer.status_code != 200 or "recorded" not in answer.text:
        raise RuntimeError(f"{number}: the code POST answered {answer.status_code}")
    engine.threads_by_change[change_id].join(timeout=60)
    entries = gateway.get(f"/api/changes/{number}/timeline").json()
    for entry in entries:
        at = ts(entry["at"])
        if entry["kind"] in ("backup_started", "step_started") and at and at >= t0 - 0.001:
            return at - t0
    raise RuntimeError(f"{number}: no step started after the approval")


def figures(name: str, values: list[float], goal: float) -> None:
    if not values:
        print(f"  {name}: no figures")
        return
    p50, p95 = percentile(values, 50), percentile(values, 95)
    print(
        f"  {name}: n={len(values)} p50={p50:.2f}s p95={p95:.2f}s max={max(values):.2f}s "
        f"(goal <= {goal:.0f}s: {'met' if p95 <= goal else 'NOT met'} at p95)"
    )


def run(args: argparse.Namespace) -> None:
    home = temp_dir("changes-waiting")
    banner("starting a Prefect server")
    server = PrefectServer(home / "prefect").start()
    print(f"  {server.api_url} up in {server.startup_seconds:.1f}s")
    os.environ.update(server.client_env())
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

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
        wait_for("the gateway", lambda: _healthy(gateway), timeout=20, interval=0.2)
        work = str(home / "work")
        os.makedirs(work, exist_ok=True)

        banner("warm-up: one change submitted and approved")
        number, change_id, _ = submit(gateway, peers.smtp, work, 0)
        engine.threads_by_change[change_id].join(timeout=60)
        approve(gateway, peers.smtp, number, engine, change_id)
        before = stack_rss(server)
        print("  RSS before: " + ", ".join(f"{k} {v:.0f} MB" for k, v in before.items()))

        count = 50 if args.quick else args.changes
        banner(f"{count} changes submitted one after another, left waiting for approval")
        to_mail: list[float] = []
        waiting: list[tuple[str, int]] = []
        started = time.monotonic()
        for index in range(1, count + 1):
            number, change_id, seconds = submit(gateway, peers.smtp, work, index)
            to_mail.append(seconds)
            waiting.append((number, change_id))
            if index % 50 == 0:
                print(f"  {index} submitted, {time.monotonic() - started:.0f}s")
            if time.monotonic() - started > args.budget:
                print(f"  stopping at {index}: over the {args.budget:.0f}s budget")
                break
        for _, change_id in waiting:
            engine.threads_by_change[change_id].join(timeout=60)
        time.sleep(2)
        after = stack_rss(server)
        prefect = Prefect(server.api_url)
        live = prefect.http.post(
            "/flow_runs/count",
            json={"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PAUSED", "PENDING"]}}}},
        ).json()
        added = sum(after.values()) - sum(before.values())
        banner(f"{len(waiting)} changes waiting for approval")
        print("  RSS after:  " + ", ".join(f"{k} {v:.0f} MB" for k, v in after.items()))
        print(
            f"  added: {added:.1f} MB in total, {added * 1024 / max(len(waiting), 1):.0f} KB a "
            f"change (goal < {GOAL_MB:.0f} MB for 500: "
            f"{'met' if added < GOAL_MB * len(waiting) / 500 else 'NOT met'}); "
            f"flow runs running, pending or paused: {live}; threads of this process: "
            f"{threading.active_count()}"
        )
        figures("submission -> first approval mail", to_mail, GOAL_SECONDS)

        banner(f"approving {args.approve} of them (link, button, code)")
        to_step = []
        for number, change_id in waiting[: args.approve]:
            to_step.append(approve(gateway, peers.smtp, number, engine, change_id))
            status = gateway.get(f"/api/changes/{number}").json()["status"]
            print(f"  {number}: first step {to_step[-1]:.2f}s after the code POST, {status}")
        figures("approval (code POST) -> first implementation step", to_step, GOAL_SECONDS)
        gateway.close()
    finally:
        peers.close()
        if "prefect" in sys.modules:
            drain_prefect()
        _common.kill_children()


def _healthy(gateway: httpx.Client) -> bool:
    try:
        return gateway.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=500, help="changes left waiting")
    parser.add_argument("--approve", type=int, default=5, help="of them approved at the end")
    parser.add_argument("--quick", action="store_true", help="50 changes")
    parser.add_argument("--budget", type=float, default=1200, help="stop submitting after (s)")
    args = parser.parse_args()
    print(
        f"changes waiting benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: child processes stopped")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
