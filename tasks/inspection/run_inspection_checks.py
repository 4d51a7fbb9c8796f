"""Check every target of a group at once; each check has its own timeout and retries.

One task for the whole group, the checks inside it on asyncio: 200 Prefect task runs cost 4 to
20 s of engine bookkeeping on a 2-core host (bench/inspection.py), more than the checks
themselves. A check that gets no answer (refused, timed out, unreachable) is tried again
`retries` times, `retry_delay` apart, and then becomes an `error` result: it never fails the task,
so one dead target cannot fail the run. A crossed threshold is an answer and is not retried.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from cryptography import x509
from prefect import task
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlmodel import Session

from itilflow import clock
from itilflow.models import get_results_since
from itilflow.policies.durations import format_duration
from itilflow.policies.inspection import (
    Check,
    HttpCheck,
    InspectionPolicy,
    Levels,
    LowLevels,
    NodeExporterCheck,
    PromqlCheck,
    TargetGroup,
    TcpCheck,
    Thresholds,
    TlsCheck,
    check_name,
    judge,
    judge_low,
    seconds_until_full,
    worst,
)
from itilflow.runtime import runtime

Result = dict[str, Any]
# (target, filesystem check name) -> [(at, {mountpoint: used percent})], oldest first
FillHistory = dict[tuple[str, str], list[tuple[datetime, dict[str, float]]]]

NODE_SAMPLES = (
    "node_cpu_seconds_total",
    "node_memory_MemAvailable_bytes",
    "node_memory_MemTotal_bytes",
    "node_filesystem_avail_bytes",
    "node_filesystem_size_bytes",
    "node_load5",
    "node_systemd_unit_state",
)


class NoAnswer(Exception):
    """The target did not answer usefully: tried again, then an `error` result."""


@task(name="run-inspection-checks")
async def run_inspection_checks(group: str) -> list[Result]:
    """Every check of every target in `group`, concurrently; one result per check (a
    node_exporter check gives one per metric, and one for the scrape itself)."""
    rt = runtime()
    policy = rt.policies.inspection
    spec = policy.group(group)
    history = await asyncio.to_thread(load_fill_history, rt.engine, policy, spec)
    return await inspect_group(policy, spec, history)


async def inspect_group(
    policy: InspectionPolicy,
    group: TargetGroup,
    history: FillHistory | None = None,
    *,
    concurrency: int | None = None,
) -> list[Result]:
    """The checks themselves, without the engine (the bench runs them with concurrency=1)."""
    limit = asyncio.Semaphore(concurrency or group.concurrency)
    clients = _Clients(concurrency or group.concurrency)
    try:

        async def one(target: str, check: Check) -> list[Result]:
            async with limit:
                return await run_check(policy, target, check, clients, history or {})

        jobs = [
            one(name, check) for name, target in group.targets.items() for check in target.checks
        ]
        batches = await asyncio.gather(*jobs)
    finally:
        await clients.close()
    return [result for batch in batches for result in batch]


async def run_check(
    policy: InspectionPolicy,
    target: str,
    check: Check,
    clients: _Clients,
    history: FillHistory,
) -> list[Result]:
    """One check with its retries; never raises."""
    name = check_name(check)
    timeout = policy.timeout_for(check).total_seconds()
    probe: Callable[[], Awaitable[list[Result]]]
    if isinstance(check, NodeExporterCheck):
        timeout += check.sample_interval.total_seconds()
        probe = lambda: _node(policy, target, check, clients, history)  # noqa: E731
    elif isinstance(check, PromqlCheck):
        probe = lambda: _promql(target, check, clients)  # noqa: E731
    elif isinstance(check, HttpCheck):
        probe = lambda: _http(target, check, clients)  # noqa: E731
    elif isinstance(check, TcpCheck):
        probe = lambda: _tcp(target, check)  # noqa: E731
    else:
        probe = lambda: _tls(target, check)  # noqa: E731
    retries = policy.retries_for(check)
    problem = "no answer"
    for attempt in range(1, retries + 2):
        try:
            async with asyncio.timeout(timeout):
                results = await probe()
            for result in results:
                result["attempts"] = attempt
            return results
        except TimeoutError:
            problem = f"no answer within {timeout:g}s"
        except (NoAnswer, OSError, httpx.TransportError) as exc:
            problem = _describe(exc)
        except Exception as exc:  # noqa: BLE001 (a bad answer or a bug: recorded, not raised)
            return [_result(target, name, check.type, "error", message=f"check failed: {exc!r}")]
        if attempt <= retries:
            await asyncio.sleep(policy.retry_delay.total_seconds())
    result = _result(target, name, check.type, "error", message=problem)
    result["attempts"] = retries + 1
    return [result]


def load_fill_history(engine: Engine, policy: InspectionPolicy, group: TargetGroup) -> FillHistory:
    """Earlier filesystem results of the group's node_exporter checks within their fill_window."""
    windows = {
        (target, f"{check_name(check)}.filesystem"): policy.thresholds_for(check).fill_window
        for target, spec in group.targets.items()
        for check in spec.checks
        if isinstance(check, NodeExporterCheck) and "filesystem_fill" in check.metrics
    }
    if not windows:
        return {}
    now = clock.now()
    with Session(engine) as session:
        rows = get_results_since(
            session=session,
            targets={target for target, _ in windows},
            check_suffix=".filesystem",
            since=now - max(windows.values()),
        )
    history: FillHistory = defaultdict(list)
    for row in rows:
        key = (row.target, row.check_name)
        if key in windows and row.at >= now - windows[key] and row.details:
            history[key].append((row.at, {k: float(v) for k, v in row.details.items()}))
    return dict(history)


# --- probes --------------------------------------------------------------------------------------


class _Clients:
    """One pooled HTTP client per TLS setting for the whole run."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}

    def get(self, verify: bool = True, ca_file: str | None = None) -> httpx.AsyncClient:
        key = (verify, ca_file)
        if key not in self._clients:
            tls: ssl.SSLContext | bool = (
                ssl.create_default_context(cafile=ca_file) if verify and ca_file else verify
            )
            self._clients[key] = httpx.AsyncClient(
                verify=tls,
                limits=httpx.Limits(max_connections=self._size, max_keepalive_connections=20),
                headers={"User-Agent": "itilflow-inspection"},
            )
        return self._clients[key]

    async def close(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients.values()))


async def _http(target: str, check: HttpCheck, clients: _Clients) -> list[Result]:
    started = time.perf_counter()
    response = await clients.get(check.verify, check.ca_file).get(check.url)
    body = response.text
    latency = time.perf_counter() - started
    status, message = "ok", f"HTTP {response.status_code} in {latency * 1000:.0f} ms"
    if response.status_code != check.status:
        status, message = "critical", f"HTTP {response.status_code}, expected {check.status}"
    elif check.expect_text is not None and check.expect_text not in body:
        status, message = "critical", f"{check.expect_text!r} not in the response"
    elif latency > check.max_latency.total_seconds():
        status = "warning"
        message += f", over {check.max_latency.total_seconds():g}s"
    return [
        _result(target, check_name(check), "http", status, round(latency, 4), "s", message=message)
    ]


async def _tcp(target: str, check: TcpCheck) -> list[Result]:
    started = time.perf_counter()
    _, writer = await asyncio.open_connection(check.host, check.port)
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    message = f"{check.host}:{check.port} open ({elapsed * 1000:.0f} ms)"
    return [_result(target, check_name(check), "tcp", "ok", round(elapsed, 4), "s", message)]


async def _tls(target: str, check: TlsCheck) -> list[Result]:
    name = check_name(check)
    untrusted = None
    try:
        der = await _peer_certificate(check, verify=check.verify)
    except ssl.SSLCertVerificationError as exc:
        untrusted = exc.verify_message or str(exc)
        der = await _peer_certificate(check, verify=False)
    certificate = x509.load_der_x509_certificate(der)
    expires = certificate.not_valid_after_utc
    days = (expires - clock.now()).total_seconds() / 86400
    status = judge_low(days, check.days_before_expiry)
    message = f"certificate expires {expires:%Y-%m-%d %H:%M} UTC, in {days:.1f} days"
    if days <= 0:
        status, message = "critical", f"certificate expired {expires:%Y-%m-%d %H:%M} UTC"
    if untrusted:
        status, message = "critical", f"certificate not trusted ({untrusted}); {message}"
    return [_result(target, name, "tls", status, round(days, 3), "d", message)]


async def _peer_certificate(check: TlsCheck, *, verify: bool) -> bytes:
    if verify:
        context = ssl.create_default_context(cafile=check.ca_file)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        check.host, check.port, ssl=context, server_hostname=check.server_name or check.host
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass
    if not der:
        raise NoAnswer("the server sent no certificate")
    return bytes(der)


async def _promql(target: str, check: PromqlCheck, clients: _Clients) -> list[Result]:
    name = check_name(check)
    response = await clients.get().get(
        f"{check.url.rstrip('/')}/api/v1/query", params={"query": check.query}
    )
    if response.status_code >= 500:
        raise NoAnswer(f"Prometheus answered HTTP {response.status_code}")
    payload = response.json()
    if payload.get("status") != "success":
        error = payload.get("error") or f"HTTP {response.status_code}"
        return [_result(target, name, "promql", "error", message=f"query refused: {error}")]
    data = payload["data"]
    if data["resultType"] == "scalar":
        series = [({}, float(data["result"][1]))]
    elif data["resultType"] == "vector":
        series = [(item["metric"], float(item["value"][1])) for item in data["result"]]
    else:
        return [
            _result(
                target,
                name,
                "promql",
                "error",
                message=f"expected an instant vector or scalar, got a {data['resultType']}",
            )
        ]
    if not series:
        return [_result(target, name, "promql", check.on_empty, message="no series")]

    def status_of(value: float) -> str:
        if check.direction == "above":
            return judge(value, Levels(warning=check.warning, critical=check.critical))
        return judge_low(value, LowLevels(warning=check.warning, critical=check.critical))

    judged = [(status_of(value), value, labels) for labels, value in series]
    pick = max if check.direction == "above" else min
    status = worst([s for s, _, _ in judged])
    value, labels = pick(((v, labels) for _, v, labels in judged), key=lambda item: item[0])
    where = ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    message = f"{where}: {value:g}{check.unit}" + (
        f" (worst of {len(series)} series)" if len(series) > 1 else ""
    )
    details = {
        (",".join(f"{k}={v}" for k, v in lb.items()) or "value"): v for _, v, lb in judged[:50]
    }
    return [_result(target, name, "promql", status, value, check.unit, message, details)]


async def _node(
    policy: InspectionPolicy,
    target: str,
    check: NodeExporterCheck,
    clients: _Clients,
    history: FillHistory,
) -> list[Result]:
    name = check_name(check)
    client = clients.get()
    started = time.perf_counter()
    first = await _scrape(client, check.url)
    elapsed = time.perf_counter() - started
    second = None
    if "cpu" in check.metrics:
        await asyncio.sleep(check.sample_interval.total_seconds())
        second = await _scrape(client, check.url)
    levels = policy.thresholds_for(check)
    current = second or first
    results = [
        _result(target, name, "node_exporter", "ok", round(elapsed, 4), "s", "metrics scraped")
    ]

    def add(metric: str, status: str, value: float | None, unit: str, message: str, **kw: Any):
        results.append(
            _result(target, f"{name}.{metric}", "node_exporter", status, value, unit, message, **kw)
        )

    cores = len({labels.get("cpu") for labels, _ in current.get("node_cpu_seconds_total", [])})
    if "cpu" in check.metrics and second is not None and cores:
        busy = _cpu_percent(first, second)
        if busy is not None:
            add("cpu", judge(busy, levels.cpu_percent), round(busy, 2), "%", f"{busy:.1f}% busy")
    if "memory" in check.metrics:
        total = _one(current, "node_memory_MemTotal_bytes")
        available = _one(current, "node_memory_MemAvailable_bytes")
        if total and available is not None:
            used = 100 * (1 - available / total)
            add("memory", judge(used, levels.memory_percent), round(used, 2), "%", f"{used:.1f}%")
    filled = _filesystems(current, check.ignore_fstypes)
    if "filesystem" in check.metrics and filled:
        results.append(_filesystem_result(target, name, filled, levels))
    if "filesystem_fill" in check.metrics and filled:
        results.append(_fill_result(target, name, filled, history, levels))
    if "load" in check.metrics and cores:
        load = _one(current, "node_load5")
        if load is not None:
            per_core = load / cores
            add(
                "load",
                judge(per_core, levels.load_per_core),
                round(per_core, 3),
                "",
                f"load5 {load:g} on {cores} cores",
            )
    if "systemd" in check.metrics and "node_systemd_unit_state" in current:
        results.append(_systemd_result(target, name, current, levels))
    return results


Samples = dict[str, list[tuple[dict[str, str], float]]]


async def _scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url)
    if response.status_code != 200:
        raise NoAnswer(f"{url} answered HTTP {response.status_code}")
    return parse_node_metrics(response.text)


def parse_node_metrics(text: str) -> Samples:
    """The samples the node checks read, from Prometheus' text exposition format."""
    wanted = [line for line in text.splitlines() if line.startswith(NODE_SAMPLES)]
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families("\n".join(wanted) + "\n"):
        for sample in family.samples:
            if sample.name in NODE_SAMPLES:
                samples[sample.name].append((dict(sample.labels), float(sample.value)))
    return dict(samples)


def _one(samples: Samples, name: str) -> float | None:
    values = samples.get(name)
    return values[0][1] if values else None


def _cpu_percent(first: Samples, second: Samples) -> float | None:
    def totals(samples: Samples) -> tuple[float, float]:
        rows = samples.get("node_cpu_seconds_total", [])
        idle = sum(v for labels, v in rows if labels.get("mode") == "idle")
        return idle, sum(v for _, v in rows)

    idle1, total1 = totals(first)
    idle2, total2 = totals(second)
    if total2 - total1 <= 0:
        return None
    return max(0.0, min(100.0, 100 * (1 - (idle2 - idle1) / (total2 - total1))))


def _filesystems(samples: Samples, ignore: list[str]) -> dict[str, float]:
    sizes = {
        labels.get("mountpoint", "?"): value
        for labels, value in samples.get("node_filesystem_size_bytes", [])
        if labels.get("fstype") not in ignore and value > 0
    }
    return {
        labels.get("mountpoint", "?"): 100 * (1 - value / sizes[labels.get("mountpoint", "?")])
        for labels, value in samples.get("node_filesystem_avail_bytes", [])
        if labels.get("mountpoint", "?") in sizes
    }


# --- results -------------------------------------------------------------------------------------


def _filesystem_result(
    target: str, name: str, filled: dict[str, float], levels: Thresholds
) -> Result:
    mountpoint, used = max(filled.items(), key=lambda item: item[1])
    return _result(
        target,
        f"{name}.filesystem",
        "node_exporter",
        judge(used, levels.filesystem_percent),
        round(used, 2),
        "%",
        f"{mountpoint} {used:.1f}% full"
        + (f" (fullest of {len(filled)})" if len(filled) > 1 else ""),
        details={mp: round(value, 3) for mp, value in filled.items()},
    )


def _fill_result(
    target: str, name: str, filled: dict[str, float], history: FillHistory, levels: Thresholds
) -> Result:
    """The soonest a filesystem fills up at the rate of its earlier results, once they span
    `fill_min_span`."""
    check = f"{name}.filesystem_fill"
    now = clock.now()
    earlier = history.get((target, f"{name}.filesystem"), [])
    predictions = {}
    span = levels.fill_min_span
    for mountpoint, used in filled.items():
        points = [(at, d[mountpoint]) for at, d in earlier if mountpoint in d]
        if not points or now - points[0][0] < span:
            continue
        seconds = seconds_until_full([*points, (now, used)])
        if seconds is not None:
            predictions[mountpoint] = seconds
    if not predictions:
        message = (
            "no filesystem is filling up"
            if any(now - at >= span for at, _ in earlier)
            else f"no prediction before results span {format_duration(span)}"
        )
        return _result(target, check, "node_exporter", "ok", None, "h", message)
    mountpoint, seconds = min(predictions.items(), key=lambda item: item[1])
    return _result(
        target,
        check,
        "node_exporter",
        judge_low(seconds, levels.filesystem_full_in),
        round(seconds / 3600, 2),
        "h",
        f"{mountpoint} full in {seconds / 3600:.1f} h at the rate of the last "
        f"{format_duration(levels.fill_window)}",
        details={mp: round(s / 3600, 2) for mp, s in predictions.items()},
    )


def _systemd_result(target: str, name: str, current: Samples, levels: Thresholds) -> Result:
    failed = sorted(
        labels.get("name", "?")
        for labels, value in current["node_systemd_unit_state"]
        if labels.get("state") == "failed" and value == 1
    )
    return _result(
        target,
        f"{name}.systemd",
        "node_exporter",
        judge(len(failed), levels.failed_units),
        len(failed),
        "",
        ("failed: " + ", ".join(failed[:10])) if failed else "no failed units",
    )


def _result(
    target: str,
    check: str,
    check_type: str,
    status: str,
    value: float | None = None,
    unit: str = "",
    message: str = "",
    details: dict[str, Any] | None = None,
) -> Result:
    return {
        "target": target,
        "check_name": check,
        "check_type": check_type,
        "status": status,
        "value": value,
        "unit": unit,
        "message": message[:2000],
        "details": details or {},
        "attempts": 1,
        "at": clock.now(),
    }


def _describe(exc: BaseException) -> str:
    """The root cause in a few words: httpx hides a refused connection three causes deep."""
    text = str(exc) or type(exc).__name__
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused: {cause}"[:500]
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        text = f"cannot connect: {text}"
    return text[:500]


__all__ = ["inspect_group", "parse_node_metrics", "run_inspection_checks"]
