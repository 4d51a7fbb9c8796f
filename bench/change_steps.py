"""The engine's overhead per step: a 20-step change through the implement-change flow, next to the
same 20 commands run directly.

    .venv/bin/python bench/change_steps.py [--quick]

Starts a Prefect server (`prefect server start`, SQLite) in a temp dir. Each step appends a line to
a file (`echo step-N >> file`, undo: delete that line); no backup, no verification. Per repetition
(5, after a warm-up; --quick: 2) the 20 commands run as:

  subprocess    `subprocess.run(["/bin/sh", "-c", cmd])`, one after another
  run_action    `executors.run_action(ShellAction(command=cmd))` (a loop per call)
  aexecute_plan the library's plan runner in one event loop, no engine (reference)
  flow          `itilflow.flows.change.implement_change(change_id, 1)` in this process, for an
                approved change inserted directly: a flow run, begin_implementation, one
                run-change-action task per step (timeline before and after), the outcome, the
                (empty) notification

Prints per method the median total and per-step time, the ratio to subprocess.run, and, for the
flow, how a step's time splits: the command itself, the task's bookkeeping around it (timeline
rows), and the gap between one task's end and the next one's start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import _common
from _common import PrefectServer, banner, spread, temp_dir

STEPS = 20


def commands(target: Path) -> list[tuple[str, str]]:
    return [
        (f"echo step-{i} >> {target}", f"sed -i '/^step-{i}$/d' {target}")
        for i in range(1, STEPS + 1)
    ]


def plan_of(target: Path) -> dict[str, Any]:
    return {
        "steps": [
            {
                "name": f"step {i:02d}",
                "do": {"kind": "shell", "command": do},
                "undo": {"kind": "shell", "command": undo},
            }
            for i, (do, undo) in enumerate(commands(target), start=1)
        ]
    }


class ApiRetries(logging.Handler):
    """Counts "503 Service Unavailable" answers of the Prefect server to this process: its SQLite
    said "database is locked", and Prefect's client waits about 2**n s before trying again."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if " 503 " in record.getMessage():
            self.count += 1

    def attach(self) -> ApiRetries:
        log = logging.getLogger("httpx")  # one INFO line per request
        log.addHandler(self)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self


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


def ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.fromisoformat(value).timestamp()


class Methods:
    def __init__(self, work: Path, rt: Any) -> None:
        self.work = work
        self.rt = rt
        self.retries = ApiRetries().attach()
        self.round = 0

    def target(self, name: str) -> Path:
        self.round += 1
        path = self.work / f"{name}-{self.round}.txt"
        path.unlink(missing_ok=True)
        return path

    def check(self, path: Path) -> None:
        lines = path.read_text().splitlines()
        if lines != [f"step-{i}" for i in range(1, STEPS + 1)]:
            raise RuntimeError(f"{path}: unexpected content {lines[:3]}...")

    def subprocess_run(self) -> dict[str, float]:
        path = self.target("subprocess")
        t0 = time.perf_counter()
        for do, _ in commands(path):
            done = subprocess.run(
                ["/bin/sh", "-c", do], stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
            if done.returncode:
                raise RuntimeError(done.stderr)
        total = time.perf_counter() - t0
        self.check(path)
        return {"total": total}

    def run_action(self) -> dict[str, float]:
        from itilflow.executors import ShellAction, run_action

        path = self.target("run_action")
        t0 = time.perf_counter()
        for do, _ in commands(path):
            result = run_action(ShellAction(command=do))
            if not result.ok:
                raise RuntimeError(result.summary)
        total = time.perf_counter() - t0
        self.check(path)
        return {"total": total}

    def aexecute_plan(self) -> dict[str, float]:
        from itilflow.executors import ChangePlan, aexecute_plan

        path = self.target("aexecute_plan")
        plan = ChangePlan.model_validate(plan_of(path))
        t0 = time.perf_counter()
        outcome = asyncio.run(aexecute_plan(plan))
        total = time.perf_counter() - t0
        if not outcome.ok:
            raise RuntimeError(outcome.outcome)
        self.check(path)
        return {"total": total}

    def flow(self) -> dict[str, float]:
        from itilflow.flows.change import implement_change
        from itilflow.models import Change, ChangeStatus, get_change_timeline, session_scope

        path = self.target("flow")
        with session_scope(self.rt.engine) as session:
            change = Change(
                title=f"bench: {STEPS} steps",
                plan=plan_of(path),
                status=ChangeStatus.approved,
                version=1,
                risk_level="low",
            )
            session.add(change)
            session.flush()
            change_id = change.id
        assert change_id is not None
        retried = self.retries.count
        t0, wall0 = time.perf_counter(), time.time()
        status = asyncio.run(implement_change(change_id, 1))
        total, wall1 = time.perf_counter() - t0, time.time()
        if status != "successful":
            raise RuntimeError(f"flow ended {status}")
        self.check(path)
        with session_scope(self.rt.engine) as session:
            entries = get_change_timeline(session=session, change_id=change_id)
            review = session.get(Change, change_id).review or {}  # type: ignore[union-attr]
        started = [ts(e.at) for e in entries if e.kind == "step_started"]
        ended = [ts(e.at) for e in entries if e.kind == "step_ok"]
        begun = next(ts(e.at) for e in entries if e.kind == "implementation_started")
        reviewed = next(ts(e.at) for e in entries if e.kind == "reviewed")
        action = [a["seconds"] for a in review["actions"]]
        if len(started) != STEPS or len(ended) != STEPS:
            raise RuntimeError(f"{len(started)} started, {len(ended)} ended")
        span = ended[-1] - started[0]
        return {
            "total": total,
            "steps_span": span,
            "command": statistics.median(action),
            "in_task": statistics.median(
                e - s - a for s, e, a in zip(started, ended, action, strict=True)
            ),
            "between": statistics.median(
                b - a for a, b in zip(ended[:-1], started[1:], strict=True)
            ),
            "before_steps": started[0] - begun,
            "after_steps": reviewed - ended[-1],
            "to_begun": begun - wall0,
            "from_reviewed": wall1 - reviewed,
            "retries": self.retries.count - retried,
        }


def run(args: argparse.Namespace) -> None:
    home = temp_dir("change-steps")
    banner("starting a Prefect server")
    server = PrefectServer(home / "prefect").start()
    print(f"  {server.api_url} up in {server.startup_seconds:.1f}s")
    os.environ.update(server.client_env())
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    # Only now: these read PREFECT_API_URL when first used.
    import secrets

    from pydantic import SecretStr

    from itilflow import runtime
    from itilflow.settings import Settings

    settings = Settings(
        data_dir=home / "data",
        api_token=SecretStr(secrets.token_urlsafe(32)),
        secret_key=SecretStr(secrets.token_urlsafe(32)),
        smtp_port=9,  # nothing is mailed: the changes have no requester email
    )
    from itilflow.models import create_db, get_engine

    create_db(get_engine(settings.database_url))  # as `itilflow db upgrade` does
    rt = runtime.configure(settings)
    work = home / "work"
    work.mkdir()
    methods = Methods(work, rt)
    names = ["subprocess", "run_action", "aexecute_plan", "flow"]
    calls = {
        "subprocess": methods.subprocess_run,
        "run_action": methods.run_action,
        "aexecute_plan": methods.aexecute_plan,
        "flow": methods.flow,
    }
    reps = 2 if args.quick else args.reps
    banner(f"{STEPS} steps, warm-up + {reps} repetitions of each method (interleaved)")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    warm: dict[str, dict[str, float]] = {}
    for rep in range(reps + 1):
        for name in names:
            figures = calls[name]()
            if rep == 0:
                warm[name] = figures
            else:
                results[name].append(figures)
        latest = warm if rep == 0 else {n: results[n][-1] for n in names}
        print(
            f"  {'warm-up' if rep == 0 else f'rep {rep}'}: "
            + ", ".join(f"{n} {latest[n]['total']:.2f}s" for n in names)
            + f" (Prefect API 503s in the flow: {latest['flow']['retries']:.0f})",
            flush=True,
        )
    report(results, warm)


def report(results: dict[str, list[dict[str, float]]], warm: dict[str, dict[str, float]]) -> None:
    banner(f"{STEPS} steps: median [min..max] over the repetitions (warm-up left out)")
    base = statistics.median(r["total"] for r in results["subprocess"])
    print(f"  {'method':<14} {'total s':>22} {'per step ms':>24} {'x subprocess':>13}")
    for name, rows in results.items():
        totals = [r["total"] for r in rows]
        per_step = [t / STEPS * 1000 for t in totals]
        ratio = statistics.median(totals) / base
        print(
            f"  {name:<14} {spread(totals, '{:.3f}'):>22} {spread(per_step, '{:.1f}'):>24} "
            f"{ratio:>12.1f}x"
        )
    print(f"  (flow warm-up, the first run in this process: {warm['flow']['total']:.2f}s)")

    flow = results["flow"]
    base_step = base / STEPS

    def med(key: str) -> float:
        return statistics.median(r[key] for r in flow) * 1000

    banner("the flow, per step (median, ms)")
    period = statistics.median(r["steps_span"] for r in flow) / STEPS * 1000
    print(f"  first step started -> last step ended, per step  {period:8.1f}")
    print(f"    the command (arun_action's own duration)       {med('command'):8.1f}")
    print(f"    in the task around it (two timeline writes)    {med('in_task'):8.1f}")
    print(f"    between one task's end and the next's start    {med('between'):8.1f}")
    print(f"  engine overhead per step vs subprocess.run       {period - base_step * 1000:8.1f}")
    print(f"  before the first step (after implementation_started) {med('before_steps'):8.1f}")
    print(f"  after the last step (to the 'reviewed' entry)    {med('after_steps'):8.1f}")
    fixed = statistics.median(r["total"] - r["steps_span"] for r in flow) * 1000
    print(f"  fixed cost of the flow run (total - steps)       {fixed:8.1f}")
    print(f"    call -> 'implementation_started' (run created) {med('to_begun'):8.1f}")
    print(f"    'reviewed' -> call returns (notify, Completed) {med('from_reviewed'):8.1f}")
    clean = [r["total"] for r in flow if not r["retries"]]
    print(
        f"  Prefect API 503s (SQLite 'database is locked', ~2s client back-off) in the flow "
        f"runs: {sum(r['retries'] for r in flow):.0f} in {len(flow) - len(clean)} of {len(flow)}"
        + (
            f"; median total of the runs without one: {statistics.median(clean):.3f}s"
            if clean
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--reps", type=int, default=5, help="repetitions in full mode")
    args = parser.parse_args()
    print(
        f"change steps benchmark, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{'quick' if args.quick else 'full'} mode, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    try:
        run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: child processes stopped")
    finally:
        if "prefect" in sys.modules:
            drain_prefect()
        _common.kill_children()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
