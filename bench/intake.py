"""Intake throughput: alerts accepted per second through POST /api/alertmanager.

    .venv/bin/python bench/intake.py [--quick] [--repeats N] [--client light|httpx|both]
                                     [--profile]

For each variant (alerts per request x concurrent clients x load generator) a fresh gateway
(uvicorn, 1 worker, as `itilflow gateway` runs it) on a fresh SQLite database receives a fixed
number of firing alerts with unique fingerprints (so each one opens an incident). Printed:
alerts/s, requests/s, response time p50/p99, gateway CPU per alert, and the check that nothing
was lost (incidents and pending "open" triggers in the database == alerts sent, zero non-2xx).

Two load generators: httpx.AsyncClient tasks, and a light keep-alive client on raw asyncio
streams. httpx costs the load generator ~3 ms of CPU per request, so on 2 shared cores it cannot
send 1,000 requests/s and the httpx figures measure the client as much as the gateway.

Beside it, the raw rate of storing the same rows in the same kind of database in this process,
without HTTP: open_incident() (ORM) one transaction per alert and 100 per transaction,
open_incidents() (Core, bulk) 100 per transaction, and the gateway's own code path (pydantic
parse + apply_alert_groups + outcomes + commit per request) - so the printed ratios tell how
much the HTTP stack costs against the database work.

--profile records the gateway with py-spy during one 1-alert run and prints where its time goes.

The load authenticates as Alertmanager does in production: with an integration's own token
(role reporter), which the gateway resolves through its token cache (gateway/deps.py);
`--token bootstrap` sends the shared ITILFLOW_API_TOKEN instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (sys.path)
import httpx
from _common import (
    BENCH,
    PYTHON,
    Gateway,
    alertmanager_payload,
    banner,
    cpu_seconds,
    firing_alert,
    itilflow_env,
    percentile,
    spread,
    temp_dir,
)

TIME_LIMIT = 120.0  # seconds per load run, whatever the count


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------- load


async def send_load(
    url: str, token: str, *, alerts: int, per_request: int, concurrency: int, run: str
) -> dict[str, Any]:
    starts_at = now_iso()
    payloads = [
        alertmanager_payload(
            firing_alert(i, run=run, starts_at=starts_at)
            for i in range(start, min(start + per_request, alerts))
        )
        for start in range(0, alerts, per_request)
    ]
    queue: collections.deque[dict[str, Any]] = collections.deque(payloads)
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    created = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + TIME_LIMIT

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60, trust_env=False
    ) as client:

        async def worker() -> None:
            nonlocal created
            while queue and time.monotonic() < deadline:
                payload = queue.popleft()
                t0 = time.perf_counter()
                try:
                    response = await client.post("/api/alertmanager", json=payload)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                statuses[response.status_code] += 1
                if response.status_code < 300:
                    created += sum(
                        1 for a in response.json()["alerts"] if a["outcome"] == "created"
                    )

        t_start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t_start
    return {
        "elapsed": elapsed,
        "requests": len(latencies),
        "unsent": len(queue),
        "latencies": latencies,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "created": created,
    }


async def send_load_raw(
    url: str, token: str, *, alerts: int, per_request: int, concurrency: int, run: str
) -> dict[str, Any]:
    """The same load from a minimal HTTP/1.1 keep-alive client on asyncio streams, which costs
    far less CPU than httpx: on 2 cores the load generator competes with the gateway."""
    import json

    host, _, port = url.removeprefix("http://").partition(":")
    starts_at = now_iso()
    bodies = collections.deque(
        json.dumps(
            alertmanager_payload(
                firing_alert(i, run=run, starts_at=starts_at)
                for i in range(start, min(start + per_request, alerts))
            )
        ).encode()
        for start in range(0, alerts, per_request)
    )
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    created = 0
    deadline = time.monotonic() + TIME_LIMIT
    head = (
        f"POST /api/alertmanager HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    ).encode()

    async def worker() -> None:
        nonlocal created
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while bodies and time.monotonic() < deadline:
                body = bodies.popleft()
                t0 = time.perf_counter()
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                try:
                    header = await reader.readuntil(b"\r\n\r\n")
                    status = int(header.split(b" ", 2)[1])
                    length = 0
                    for line in header.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    payload = await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    return
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                if status < 300:
                    created += payload.count(b'"outcome":"created"')
        finally:
            writer.close()

    t_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t_start
    return {
        "elapsed": elapsed,
        "requests": len(latencies),
        "unsent": len(bodies),
        "latencies": latencies,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "created": created,
    }


def count_rows(db: Path, run: str) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        incidents = conn.execute(
            "SELECT count(*) FROM incident WHERE fingerprint LIKE ?", (f"{run}%",)
        ).fetchone()[0]
        triggers = conn.execute(
            "SELECT count(*) FROM flowtrigger t JOIN incident i ON i.id = t.incident_id "
            "WHERE i.fingerprint LIKE ? AND t.kind = 'open' AND t.done_at IS NULL",
            (f"{run}%",),
        ).fetchone()[0]
    return incidents, triggers


def one_gateway_run(
    *,
    alerts: int,
    per_request: int,
    concurrency: int,
    label: str,
    profile: Path | None = None,
    variant: dict[str, Any] | None = None,
    token_kind: str = "integration",
) -> dict[str, Any]:
    data = temp_dir("intake")
    variant = variant or {}
    env = itilflow_env(data) | variant.get("env", {})
    gateway = Gateway(
        env,
        data / "gateway.log",
        workers=variant.get("workers", 1),
        extra_args=variant.get("args", ()),
    ).start()
    token = gateway.token if token_kind == "bootstrap" else integration_token(env)
    spy: subprocess.Popen[bytes] | None = None
    try:
        # Warm up (imports, first queries, connection pool) outside the measurement.
        asyncio.run(
            send_load(
                gateway.url,
                token,
                alerts=20,
                per_request=1,
                concurrency=4,
                run="warm",
            )
        )
        if profile is not None:
            spy = _common.spawn(
                [
                    str(Path(PYTHON).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(gateway.proc.pid if gateway.proc else 0),
                    "--format",
                    "raw",
                    "--gil",
                    "--rate",
                    "200",
                    "--output",
                    str(profile),
                ],
                env=_common.base_env(),
                log=data / "py-spy.log",
            )
            time.sleep(1.0)
        run = f"r{label}x"
        cpu0 = cpu_seconds(gateway.proc.pid if gateway.proc else 0)
        client_cpu0 = time.process_time()
        sender = send_load_raw if variant.get("client") == "raw" else send_load
        result = asyncio.run(
            sender(
                gateway.url,
                token,
                alerts=alerts,
                per_request=per_request,
                concurrency=concurrency,
                run=run,
            )
        )
        result["gateway_cpu"] = cpu_seconds(gateway.proc.pid if gateway.proc else 0) - cpu0
        result["client_cpu"] = time.process_time() - client_cpu0
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its output on SIGINT
            spy.wait(timeout=30)
        result["db_incidents"], result["db_open_triggers"] = count_rows(data / "itilflow.db", run)
        return result
    finally:
        if spy is not None and spy.poll() is None:
            _common.kill(spy)
        gateway.stop()


def integration_token(env: dict[str, str]) -> str:
    """A token of the integration `alertmanager` with the role reporter, as
    `itilflow token create alertmanager --integration` and `role grant` make them."""
    from itilflow.models import get_engine, session_scope
    from itilflow.services import principals

    engine = get_engine(env["ITILFLOW_DATABASE_URL"])
    try:
        with session_scope(engine) as session:
            principals.grant_role(
                session=session, role="reporter", subject_kind="integration",
                subject="alertmanager", granted_by="bench",
            )  # fmt: skip
            token, _ = principals.create_token(
                session=session, principal="alertmanager", kind="integration", created_by="bench"
            )
    finally:
        engine.dispose()
    return token


def report_gateway(result: dict[str, Any], alerts: int, per_request: int) -> dict[str, float]:
    lat = result["latencies"]
    ok = sum(n for code, n in result["statuses"].items() if 200 <= code < 300)
    non2xx = sum(n for code, n in result["statuses"].items() if not 200 <= code < 300)
    accepted = result["created"]
    alerts_s = accepted / result["elapsed"]
    req_s = ok / result["elapsed"]
    lost = alerts - result["db_incidents"]
    verdict = (
        "OK"
        if result["db_incidents"] == alerts
        and result["db_open_triggers"] == alerts
        and non2xx == 0
        and not result["errors"]
        and not result["unsent"]
        else "LOSS/ERRORS"
    )
    cpu = result["gateway_cpu"]
    print(
        f"  {alerts_s:8.0f} alerts/s {req_s:8.0f} req/s  p50={percentile(lat, 50) * 1000:6.1f}ms "
        f"p99={percentile(lat, 99) * 1000:6.1f}ms max={max(lat) * 1000:6.1f}ms  "
        f"in {result['elapsed']:.1f}s\n"
        f"    gateway CPU {cpu * 1000 / alerts:.2f} ms/alert ({cpu / result['elapsed']:.0%} of a "
        f"core), load generator {result['client_cpu'] / result['elapsed']:.0%} of a core\n"
        f"    db: {result['db_incidents']} incidents, {result['db_open_triggers']} open triggers "
        f"(lost {lost}); non-2xx={non2xx} errors={result['errors'] or 0} "
        f"unsent={result['unsent']}  {verdict}",
        flush=True,
    )
    return {
        "alerts_s": alerts_s,
        "req_s": req_s,
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "ok": float(verdict == "OK"),
        "cpu_ms": result["gateway_cpu"] * 1000 / alerts,
    }


# ---------------------------------------------------------------------------------- raw


def raw_rates(alerts: int, batch: int = 100) -> dict[str, float]:
    """The same rows stored in this process without HTTP, on a fresh DB each."""
    from sqlmodel import Session

    from itilflow.models import IncidentCreate, create_db, get_engine
    from itilflow.policies import alert_impact_urgency, load_policies
    from itilflow.services import incidents
    from itilflow.services.alerts import (
        AlertIn,
        AlertmanagerWebhook,
        alert_dedup_key,
        alert_title,
        apply_alert_groups,
        outcomes_of,
    )

    policies = load_policies(None)
    starts_at = now_iso()
    rates: dict[str, float] = {}

    def fresh_engine(name: str) -> Any:
        data = temp_dir(f"raw-{name}")
        engine = get_engine(f"sqlite:///{(data / 'itilflow.db').resolve()}")
        create_db(engine)
        return engine

    def new_for(raw: dict[str, Any]) -> tuple[IncidentCreate, str]:
        alert = AlertIn.model_validate(raw)
        impact, urgency, category = alert_impact_urgency(policies.routing, alert.labels)
        new = IncidentCreate(
            title=alert_title(alert),
            description=alert.annotations.get("description", ""),
            category=category,
            ci_name=alert.labels.get("instance"),
            impact=impact,
            urgency=urgency,
            source="alertmanager",
            fingerprint=alert.fingerprint,
            labels={**alert.labels, "generatorURL": alert.generatorURL},
        )
        return new, alert_dedup_key(alert)

    raws = [firing_alert(i, run="raw", starts_at=starts_at) for i in range(alerts)]
    prepared = [new_for(raw) for raw in raws]

    engine = fresh_engine("each")
    t0 = time.perf_counter()
    for new, key in prepared:
        with Session(engine, expire_on_commit=False) as session:
            incidents.open_incident(
                session=session, new=new, policies=policies, actor="bench", dedup_key=key
            )
            session.commit()
    rates["raw_each"] = alerts / (time.perf_counter() - t0)

    engine = fresh_engine("batch")
    t0 = time.perf_counter()
    for start in range(0, alerts, batch):
        with Session(engine, expire_on_commit=False) as session:
            for new, key in prepared[start : start + batch]:
                incidents.open_incident(
                    session=session, new=new, policies=policies, actor="bench", dedup_key=key
                )
            session.commit()
    rates[f"raw_batch{batch}"] = alerts / (time.perf_counter() - t0)

    engine = fresh_engine("bulk")
    t0 = time.perf_counter()
    for start in range(0, alerts, batch):
        with Session(engine, expire_on_commit=False) as session:
            chunk = prepared[start : start + batch]
            incidents.open_incidents(
                session=session,
                new=[new for new, _ in chunk],
                dedup_keys=[key for _, key in chunk],
                policies=policies,
                actor="bench",
            )
            session.commit()
    rates[f"bulk_batch{batch}"] = alerts / (time.perf_counter() - t0)

    # The gateway's handler body without HTTP/FastAPI: parse + apply_alert_groups + outcomes
    # + commit per request.
    for per_request in (1, 10):
        engine = fresh_engine(f"path{per_request}")
        payloads = [
            alertmanager_payload(raws[start : start + per_request])
            for start in range(0, alerts, per_request)
        ]
        t0 = time.perf_counter()
        for payload in payloads:
            body = AlertmanagerWebhook.model_validate(payload)
            with Session(engine, expire_on_commit=False) as session:
                [results] = apply_alert_groups(session, [body.alerts], policies=policies)
                outcomes_of(body.alerts, results, url_of=lambda i: f"/x/{i}")
                session.commit()
        rates[f"handler_{per_request}"] = alerts / (time.perf_counter() - t0)
    return rates


# ---------------------------------------------------------------------------------- profile


def print_profile(path: Path, top: int = 25) -> None:
    """Summarise py-spy's raw (collapsed) stacks: self time and inclusive time per frame."""
    if not path.exists():
        print("  (py-spy wrote nothing; ptrace not allowed?)")
        return
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        self_t[_short(frames[-1])] += n
        for frame in {_short(f) for f in frames}:
            incl[frame] += n
    print(f"  {total} samples")
    print("  inclusive (share of all samples, all threads):")
    for frame, n in incl.most_common(top):
        print(f"    {n / total:6.1%}  {frame}")
    print("  self:")
    for frame, n in self_t.most_common(top):
        print(f"    {n / total:6.1%}  {frame}")


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (package/file.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    else:
        parts = parts[-2:]
    return f"{name} ({'/'.join(parts[:3])})"


# ---------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 alerts, 1 repeat")
    parser.add_argument("--alerts", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway once")
    parser.add_argument(
        "--client",
        choices=("light", "httpx", "both"),
        default="both",
        help="load generator: the light raw-socket client, httpx, or each in turn",
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also run configurations the product does not ship (serialised writers, 2 workers)",
    )
    parser.add_argument(
        "--extra-site",
        help="a folder with uvloop and httptools (pip install --target DIR uvloop httptools) "
        "for the --experiments variant with uvicorn's fast loop and HTTP parser",
    )
    parser.add_argument(
        "--token",
        choices=("integration", "bootstrap"),
        default="integration",
        help="authenticate with an integration's token (default) or the shared bootstrap token",
    )
    args = parser.parse_args()
    # 2,000 even when quick: at 10 alerts per request 500 alerts were 50 requests in 0.1 s.
    alerts = args.alerts or (2000 if args.quick else 5000)
    repeats = args.repeats or (1 if args.quick else 2)
    shapes = [(1, 16), (1, 64), (10, 16), (10, 64)]
    if args.quick:
        shapes = [(1, 32), (10, 16)]
    clients = ["light", "httpx"] if args.client == "both" else [args.client]
    variants = [(pr, c, client) for client in clients for pr, c in shapes]

    banner(f"gateway: {alerts} alerts per run, {repeats} run(s) per variant, uvicorn 1 worker")
    figures: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    for per_request, concurrency, client in variants:
        for rep in range(repeats):
            print(
                f"{per_request:>2} alert(s)/request, {concurrency} {client} clients, "
                f"run {rep + 1}:",
                flush=True,
            )
            result = one_gateway_run(
                alerts=alerts,
                per_request=per_request,
                concurrency=concurrency,
                label=f"{per_request}c{concurrency}{client[0]}n{rep}",
                variant={"client": "raw"} if client == "light" else None,
                token_kind=args.token,
            )
            figures.setdefault((per_request, concurrency, client), []).append(
                report_gateway(result, alerts, per_request)
            )

    banner(f"raw: the same rows in this process, no HTTP ({alerts} alerts, {repeats} run(s))")
    raw_runs = [raw_rates(alerts) for _ in range(repeats)]
    raw = {key: [r[key] for r in raw_runs] for key in raw_runs[0]}
    labels = {
        "raw_each": "open_incident, 1 transaction per alert",
        "raw_batch100": "open_incident, 100 alerts per transaction",
        "bulk_batch100": "open_incidents (Core, bulk), 100 alerts per transaction",
        "handler_1": "gateway handler body (parse+apply_alert_groups+commit), 1 alert/request",
        "handler_10": "gateway handler body (parse+apply_alert_groups+commit), 10 alerts/request",
    }
    for key, values in raw.items():
        print(f"  {spread(values, '{:.0f}'):>22} alerts/s  {labels[key]}")

    banner("summary (median [min..max] of runs)")
    raw_each = statistics.median(raw["raw_each"])
    print(
        f"{'variant':<32}{'alerts/s':>22}{'req/s':>22}{'p50 ms':>20}{'p99 ms':>22}"
        f"{'gw CPU ms/alert':>22}{'gw/raw':>8}{'gw/handler':>11}  check"
    )
    for (per_request, concurrency, client), runs in figures.items():
        med = statistics.median(r["alerts_s"] for r in runs)
        handler = statistics.median(raw[f"handler_{per_request}"])
        print(
            f"{f'{per_request} alert/req, {concurrency} {client}':<32}"
            f"{spread([r['alerts_s'] for r in runs], '{:.0f}'):>22}"
            f"{spread([r['req_s'] for r in runs], '{:.0f}'):>22}"
            f"{spread([r['p50_ms'] for r in runs]):>20}"
            f"{spread([r['p99_ms'] for r in runs]):>22}"
            f"{spread([r['cpu_ms'] for r in runs], '{:.2f}'):>22}"
            f"{med / raw_each:>8.2f}{med / handler:>11.2f}  "
            f"{'OK' if all(r['ok'] for r in runs) else 'LOSS/ERRORS'}"
        )
    goal = [
        (pr, c, client)
        for (pr, c, client), runs in figures.items()
        if statistics.median(r["alerts_s"] for r in runs) >= 1000
        and statistics.median(r["p99_ms"] for r in runs) < 100
    ]
    print(
        "goal >= 1,000 alerts/s with p99 < 100 ms: "
        + (f"met by {goal}" if goal else "MISSED by every variant")
    )

    if args.experiments:
        experiments: dict[str, dict[str, Any]] = {
            "as shipped": {},
            "1 worker thread (serialised writers)": {"env": {"BENCH_GATEWAY_THREADS": "1"}},
            "as shipped, light raw-socket client": {"client": "raw"},
            "1 worker thread, light client": {
                "env": {"BENCH_GATEWAY_THREADS": "1"},
                "client": "raw",
            },
            "2 uvicorn workers, light client": {"workers": 2, "client": "raw"},
        }
        if args.extra_site:
            extra = {
                "env": {
                    "PYTHONPATH": os.pathsep.join(
                        [str(Path(args.extra_site).resolve()), str(_common.ROOT), str(BENCH)]
                    )
                },
                "args": ["--loop", "uvloop", "--http", "httptools"],
                "client": "raw",
            }
            experiments["uvloop + httptools, light client"] = extra
            experiments["uvloop + httptools + 1 thread"] = extra | {
                "env": extra["env"] | {"BENCH_GATEWAY_THREADS": "1"}
            }
        count = min(alerts, 1000)
        banner(f"experiments ({count} alerts per run; not the product's configuration)")
        for name, variant in experiments.items():
            for per_request, concurrency in ((1, 32), (10, 16)):
                print(f"{name}: {per_request} alert(s)/request, {concurrency} clients:", flush=True)
                result = one_gateway_run(
                    alerts=count,
                    per_request=per_request,
                    concurrency=concurrency,
                    label=f"x{per_request}",
                    variant=variant,
                )
                report_gateway(result, count, per_request)

    if args.profile:
        banner("py-spy of the gateway, 1 alert/request, 32 light clients")
        profile = temp_dir("profile") / "gateway.raw"
        result = one_gateway_run(
            alerts=min(alerts, 3000),
            per_request=1,
            concurrency=32,
            label="prof",
            profile=profile,
            variant={"client": "raw"},
        )
        report_gateway(result, min(alerts, 3000), 1)
        print_profile(profile)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted; child processes stopped", flush=True)
