"""Alert to first notification: POST /api/alertmanager -> first chat message / first email.

    .venv/bin/python bench/alert_latency.py [--quick]

Starts, in a temp dir: a Prefect server (`prefect server start`, SQLite), an SMTP server and an
HTTP chat sink (both in this process, stamping each arrival), the gateway (uvicorn child) and the
runner (`python -m itilflow.cli runner` child, as `itilflow up` runs it). Then sends new firing
alerts (P1: severity critical, impact high), each opening an incident:

  spaced: 50 alerts 200 ms apart (--quick: 15)
  burst:  20 alerts at once, twice (--quick: 10, once)

and prints, per phase, p50/p95/max of POST -> first chat message naming the incident's number,
and POST -> first email naming it, plus the runner's flow-run rate during the burst.
Goal: p95 <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import threading
import time
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
    percentile,
    settings_from_env,
    spawn,
    summary,
    temp_dir,
    write_apprise_config,
)

NUMBER = re.compile(r"INC-\d{6}")
WAIT_LIMIT = 90.0  # seconds to wait for the last notification of a phase


class Arrivals:
    """First arrival time (time.monotonic) per incident number and channel."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.count: dict[str, int] = {"chat": 0, "email": 0}
        self.lock = threading.Lock()

    def record(self, channel: str, text: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.count[channel] += 1
            for number in set(NUMBER.findall(text)):
                self.first.setdefault((number, channel), now)


def start_peers(arrivals: Arrivals) -> tuple[Any, Any]:
    from tests.support.http_sink import HttpSink
    from tests.support.smtp import SmtpCapture

    class StampingSink(HttpSink):
        def _record(self, request: Any) -> None:
            arrivals.record("chat", request.body.decode(errors="replace"))

    class StampingSmtp(SmtpCapture):
        def _record(self, mail: Any) -> None:
            arrivals.record("email", str(mail.message["Subject"]))

    return StampingSink().start(), StampingSmtp().start()


async def post_alerts(
    gateway: Gateway, indexes: list[int], *, run: str, spacing: float
) -> dict[str, tuple[float, float]]:
    """POST one alert per request; returns number -> (t_post, response seconds)."""
    starts_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sent: dict[str, tuple[float, float]] = {}
    headers = {"Authorization": f"Bearer {gateway.token}"}
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, timeout=30, trust_env=False
    ) as client:

        async def one(index: int) -> None:
            alert = firing_alert(index, run=run, starts_at=starts_at)
            alert["labels"]["impact"] = "high"
            t0 = time.monotonic()
            response = await client.post("/api/alertmanager", json=alertmanager_payload([alert]))
            response.raise_for_status()
            number = response.json()["alerts"][0]["number"]
            sent[number] = (t0, time.monotonic() - t0)

        if spacing > 0:
            tasks = []
            for index in indexes:
                tasks.append(asyncio.create_task(one(index)))
                await asyncio.sleep(spacing)
            await asyncio.gather(*tasks)
        else:
            await asyncio.gather(*(one(index) for index in indexes))
    return sent


def wait_all(arrivals: Arrivals, numbers: list[str], limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with arrivals.lock:
            missing = [
                n for n in numbers for c in ("chat", "email") if (n, c) not in arrivals.first
            ]
        if not missing:
            return
        time.sleep(0.1)


def report(name: str, sent: dict[str, tuple[float, float]], arrivals: Arrivals) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    print(f"{name}: {len(sent)} alerts")
    post = [seconds for _, seconds in sent.values()]
    print(f"  POST response        {summary(post, 'ms', 1000)}")
    for channel in ("chat", "email"):
        latencies = [
            arrivals.first[(number, channel)] - t0
            for number, (t0, _) in sent.items()
            if (number, channel) in arrivals.first
        ]
        missing = len(sent) - len(latencies)
        print(
            f"  POST -> first {channel:<5} {summary(latencies)}"
            + (f"  MISSING {missing} after {WAIT_LIMIT:.0f}s" if missing else "")
        )
        if channel == "chat" and latencies:
            # In sending order: a slow first one is the engine warming up, a slow later one not.
            ordered = sorted(
                (t0, arrivals.first[(number, channel)] - t0)
                for number, (t0, _) in sent.items()
                if (number, channel) in arrivals.first
            )
            print("  chat, in sending order: " + " ".join(f"{s:.2f}" for _, s in ordered))
        figures[channel] = latencies
        figures[f"{channel}_missing"] = missing
    first_post = min(t0 for t0, _ in sent.values())
    last_chat = max(
        (arrivals.first[(n, "chat")] for n in sent if (n, "chat") in arrivals.first),
        default=first_post,
    )
    figures["drain_seconds"] = last_chat - first_post
    print(
        f"  all {len(sent)} chat messages out {last_chat - first_post:.1f}s after the first POST "
        f"({len(sent) / max(last_chat - first_post, 1e-9):.1f} incidents/s)"
    )
    return figures


class CpuMeter:
    """CPU seconds used by each process of the stack between start() and stop()."""

    def __init__(self, procs: dict[str, Any]) -> None:
        self.procs = procs
        self.t0 = 0.0
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before = {name: self._cpu(proc) for name, proc in self.procs.items()}

    def stop(self) -> str:
        wall = time.monotonic() - self.t0
        parts = [
            f"{name} {(self._cpu(proc) - self.before[name]) / wall:.0%}"
            for name, proc in self.procs.items()
        ]
        return f"  CPU over {wall:.0f}s (share of one core): " + ", ".join(parts)

    @staticmethod
    def _cpu(proc: Any) -> float:
        return time.process_time() if proc is None else cpu_seconds(proc.pid)


def engine_report(api_url: str) -> None:
    """What the engine recorded: flow and task run durations by name, and flow-run starts/s."""
    from datetime import datetime

    def parse(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    def fetch(kind: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while len(rows) < 5000:
            page = httpx.post(
                f"{api_url}/{kind}/filter",
                json={"limit": 200, "offset": len(rows), "sort": "EXPECTED_START_TIME_ASC"},
                timeout=30,
                trust_env=False,
            ).json()
            rows += page
            if len(page) < 200:
                return rows
        return rows

    banner("engine: run durations recorded by the Prefect server")
    for kind in ("flow_runs", "task_runs"):
        by_name: dict[str, list[float]] = {}
        for run in fetch(kind):
            start, end = parse(run.get("start_time")), parse(run.get("end_time"))
            if start and end:
                name = run["name"].split(" ")[0] if kind == "flow_runs" else run["name"]
                name = name.rsplit("-", 1)[0] if kind == "task_runs" else name
                by_name.setdefault(name, []).append((end - start).total_seconds())
        for name, values in sorted(by_name.items()):
            print(f"  {kind[:-5]:<5} {name:<22} {summary(values)}")


def server_pid(server: PrefectServer) -> int:
    """`prefect server start` serves from a uvicorn child: profile that one if there is one."""
    assert server.proc is not None
    try:
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
    except OSError:
        children = ""
    return int(children.split()[0]) if children.split() else server.proc.pid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=2, help="runner concurrency")
    parser.add_argument(
        "--profile",
        choices=["runner", "server"],
        help="record the runner (GIL-holding samples) or the Prefect server with py-spy",
    )
    args = parser.parse_args()
    spaced_n, burst_n, bursts = (15, 10, 1) if args.quick else (50, 20, 2)

    tmp = temp_dir("latency")
    server = PrefectServer(tmp / "prefect")
    t0 = time.monotonic()
    server_thread = threading.Thread(target=server.start, daemon=True)
    server_thread.start()

    arrivals = Arrivals()
    sink, smtp = start_peers(arrivals)
    try:
        apprise = write_apprise_config(tmp / "apprise.yaml", sink.apprise_url())
        env = itilflow_env(
            tmp / "data",
            smtp_port=smtp.port,
            apprise_config=apprise,
            runner_concurrency=str(args.concurrency),
            public_url="http://127.0.0.1:8080",
        )
        settings = settings_from_env(env)
        from itilflow.demo import load_people
        from itilflow.models import create_db, get_engine

        create_db(get_engine(settings.database_url))  # as `itilflow db upgrade` does
        load_people(settings)
        gateway = Gateway(env, tmp / "gateway.log").start()
        server_thread.join(timeout=150)
        if not server.proc or server.startup_seconds == 0:
            raise SystemExit(f"Prefect server did not start:\n{_common.tail(server.log)}")
        print(f"Prefect server answered /api/health after {server.startup_seconds:.1f}s")
        runner_env = base_env() | env | server.client_env()
        runner_log = tmp / "runner.log"
        runner = spawn([PYTHON, "-m", "itilflow.cli", "runner"], env=runner_env, log=runner_log)
        print(f"stack up in {time.monotonic() - t0:.1f}s; runner concurrency {args.concurrency}")
        meter = CpuMeter(
            {
                "prefect server": server.proc,
                "runner": runner,
                "gateway": gateway.proc,
                "bench": None,
            }
        )
        spy = None
        if args.profile:
            spy = spawn(
                [
                    str(Path(PYTHON).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(runner.pid if args.profile == "runner" else server_pid(server)),
                    "--gil" if args.profile == "runner" else "--subprocesses",
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "--output",
                    str(tmp / "profile.raw"),
                ],
                env=base_env(),
                log=tmp / "py-spy.log",
            )

        # Warm-up: the runner's first flow run pays for imports and the client's first requests.
        banner("warm-up (not counted)")
        warm = asyncio.run(post_alerts(gateway, [0, 1], run="warm", spacing=0))
        wait_all(arrivals, list(warm), limit=120)
        report("warm-up", warm, arrivals)
        if runner.poll() is not None:
            raise SystemExit(f"runner exited:\n{_common.tail(runner_log)}")

        results: dict[str, dict[str, Any]] = {}
        banner(f"spaced: {spaced_n} alerts, one every 200 ms")
        meter.start()
        sent = asyncio.run(post_alerts(gateway, list(range(spaced_n)), run="sp", spacing=0.2))
        wait_all(arrivals, list(sent))
        results["spaced"] = report("spaced", sent, arrivals)
        print(meter.stop())

        for b in range(bursts):
            banner(f"burst {b + 1}: {burst_n} alerts at once")
            time.sleep(5)  # let the escalation runs of the previous phase drain
            meter.start()
            sent = asyncio.run(post_alerts(gateway, list(range(burst_n)), run=f"b{b}x", spacing=0))
            wait_all(arrivals, list(sent))
            results[f"burst{b + 1}"] = report(f"burst {b + 1}", sent, arrivals)
            print(meter.stop())
        time.sleep(3)
        engine_report(server.api_url)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            from intake import print_profile

            banner(f"py-spy of the {args.profile}")
            print_profile(tmp / "profile.raw", top=70)

        banner("summary")
        print(
            f"{'phase':<10}{'chat p50':>10}{'chat p95':>10}{'chat max':>10}"
            f"{'mail p50':>10}{'mail p95':>10}{'mail max':>10}  goal p95<=3s"
        )
        for name, fig in results.items():
            chat, mail = fig["chat"], fig["email"]
            ok = (
                chat
                and percentile(chat, 95) <= 3
                and not fig["chat_missing"]
                and not fig["email_missing"]
            )
            print(
                f"{name:<10}{percentile(chat, 50):>9.2f}s{percentile(chat, 95):>9.2f}s"
                f"{max(chat or [float('nan')]):>9.2f}s{percentile(mail, 50):>9.2f}s"
                f"{percentile(mail, 95):>9.2f}s{max(mail or [float('nan')]):>9.2f}s  "
                f"{'met' if ok else 'MISSED'}"
            )
        print(f"chat messages received {arrivals.count['chat']}, mails {arrivals.count['email']}")
        warnings = [
            line for line in runner_log.read_text(errors="replace").splitlines() if "failed" in line
        ]
        print(f"runner log lines with 'failed': {len(warnings)}")
        for line in warnings[:5]:
            print(f"  {line[:200]}")
    finally:
        _common.kill_children()
        sink.stop()
        smtp.stop()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
