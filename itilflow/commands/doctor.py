"""`itilflow doctor`: checks a running installation, one line per part, ok or fail and why.

Each check stands alone (a failing one does not hide the next) and answers within seconds; the
exit status is 0 only when every check passes, so a script or a monitor can run it.
"""

from __future__ import annotations

import argparse
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from itilflow import clock
from itilflow.settings import Settings, SettingsError

# A due trigger waits for a free lane of its kind while a batch of that kind runs (seconds).
DEFAULT_MAX_RUNNER_LAG = 120.0
TIMEOUT = 5.0


@dataclass
class Check:
    name: str
    ok: bool
    reason: str

    def line(self) -> str:
        return f"{self.name:<12} {'ok' if self.ok else 'FAIL'}: {self.reason}"


def _prefect_client(settings: Settings, api_url: str) -> httpx.Client:
    return httpx.Client(base_url=api_url, timeout=TIMEOUT, auth=settings.prefect_basic_auth)


def check_database(database_url: str) -> Check:
    from sqlalchemy import text

    from itilflow.models import get_engine

    try:
        with get_engine(database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 (any failure is the answer)
        return Check("database", False, f"cannot connect: {_first_line(exc)}")
    return Check("database", True, f"reachable ({_without_password(database_url)})")


def check_migrations(database_url: str) -> Check:
    from itilflow.models import get_engine
    from itilflow.models.migrations import current_revision, head_revision

    try:
        current = current_revision(get_engine(database_url))
        head = head_revision()
    except Exception as exc:  # noqa: BLE001
        return Check("migrations", False, f"cannot read the revision: {_first_line(exc)}")
    if current != head:
        return Check(
            "migrations",
            False,
            f"database at {current or 'no revision'}, code at {head}: run `itilflow db upgrade`",
        )
    return Check("migrations", True, f"at head ({head})")


def check_prefect_server(api: httpx.Client) -> Check:
    try:
        health = api.get("/health")
        version = api.get("/admin/version")
    except httpx.HTTPError as exc:
        return Check("prefect", False, f"{api.base_url} does not answer: {exc}")
    if health.status_code != 200:
        return Check("prefect", False, f"{api.base_url}/health answered {health.status_code}")
    return Check("prefect", True, f"{api.base_url} answers (Prefect {version.json()})")


def check_scheduler(api: httpx.Client) -> Check:
    from itilflow.health import deployments_without_upcoming_runs, scheduled_deployments

    try:
        deployments = scheduled_deployments(api)
        missing = deployments_without_upcoming_runs(api, deployments)
    except httpx.HTTPError as exc:
        return Check("scheduler", False, f"cannot ask the Prefect server: {exc}")
    if not deployments:
        return Check("scheduler", False, "no deployment has an active schedule (not deployed?)")
    if missing:
        return Check(
            "scheduler",
            False,
            f"no upcoming scheduled runs for {', '.join(missing)} (see the Prefect server's log)",
        )
    return Check("scheduler", True, f"all {len(deployments)} scheduled deployments have runs ahead")


def check_work_pool(api: httpx.Client, pool: str) -> Check:
    from itilflow.health import post_to_prefect

    try:
        found = api.get(f"/work_pools/{pool}")
        if found.status_code == 404:
            return Check("work pool", False, f"no work pool {pool!r} (itilflow up creates it)")
        found.raise_for_status()
        workers = post_to_prefect(api, f"/work_pools/{pool}/workers/filter", {})
    except httpx.HTTPError as exc:
        return Check("work pool", False, f"cannot ask the Prefect server: {exc}")
    if found.json().get("is_paused"):
        return Check("work pool", False, f"work pool {pool!r} is paused")
    online = [worker["name"] for worker in workers.json() if worker.get("status") == "ONLINE"]
    if not online:
        return Check("work pool", False, f"work pool {pool!r} has no live worker")
    return Check("work pool", True, f"{pool!r}: {len(online)} live worker(s) ({', '.join(online)})")


def check_runner_lag(database_url: str, max_lag: float) -> Check:
    from sqlalchemy import or_
    from sqlmodel import Session, col, select

    from itilflow.models import get_engine
    from itilflow.models.trigger import FlowTrigger

    now = clock.now()
    query = (
        select(FlowTrigger.due_at)
        .where(
            col(FlowTrigger.done_at).is_(None),
            col(FlowTrigger.cancelled_at).is_(None),
            col(FlowTrigger.due_at) <= now,
            or_(col(FlowTrigger.claimed_until).is_(None), col(FlowTrigger.claimed_until) < now),
        )
        .order_by(col(FlowTrigger.due_at))
        .limit(1)
    )
    try:
        with Session(get_engine(database_url)) as session:
            oldest = session.exec(query).first()
    except Exception as exc:  # noqa: BLE001
        return Check("runner", False, f"cannot read the triggers: {_first_line(exc)}")
    if oldest is None:
        return Check("runner", True, "no due trigger waits for the runner")
    waited = (now - oldest).total_seconds()
    reason = f"the oldest due, unclaimed trigger waits {waited:.0f} s"
    if waited > max_lag:
        return Check("runner", False, f"{reason} (more than {max_lag:.0f} s: is the runner up?)")
    return Check("runner", True, reason)


def check_smtp(host: str, port: int, *, use_ssl: bool = False, timeout: float = TIMEOUT) -> Check:
    """The server's greeting: a 220 line (then QUIT), read from a plain socket."""
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = (
                ssl.create_default_context().wrap_socket(raw, server_hostname=host)
                if use_ssl
                else raw
            )
            banner = _read_line(sock)
            if banner.startswith("220"):
                sock.sendall(b"QUIT\r\n")
    except OSError as exc:
        return Check("smtp", False, f"{where}: {exc.strerror or exc}")
    if not banner.startswith("220"):
        return Check("smtp", False, f"{where} greeted with {banner[:80]!r}, not 220")
    return Check("smtp", True, f"{where} greets: {banner[:80]}")


def _read_line(sock: socket.socket) -> str:
    data = b""
    while b"\n" not in data and len(data) < 1024:
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()


def check_apprise(config: Path | None, tags: list[str] | None) -> Check:
    """The config loads, routes every tag the policies use, and its services' hosts (where a
    service has one) accept a connection."""
    if config is None:
        return Check("apprise", True, "no apprise config: chat notifications are off")
    import apprise

    from itilflow.notifications.chat import NotificationError, _load_config

    try:
        loaded = _load_config(config)
    except NotificationError as exc:
        return Check("apprise", False, str(exc))
    notifier = apprise.Apprise()
    notifier.add(loaded)
    unrouted = [tag for tag in tags or [] if not any(notifier.find(tag=tag, match_always=False))]
    if unrouted:
        return Check("apprise", False, f"{config}: no service for tag(s) {', '.join(unrouted)}")
    unreachable = []
    services = list(notifier)
    for service in services:
        host = getattr(service, "host", None)
        if not host:
            continue
        port = getattr(service, "port", None) or (443 if getattr(service, "secure", False) else 80)
        try:
            socket.create_connection((host, port), timeout=TIMEOUT).close()
        except OSError as exc:
            unreachable.append(f"{service.url(privacy=True)} ({exc.strerror or exc})")
    if unreachable:
        return Check("apprise", False, f"unreachable: {'; '.join(unreachable)}")
    return Check("apprise", True, f"{config}: {len(services)} service(s), reachable")


def check_policies(policy_dir: Path | None) -> Check:
    from itilflow.policies import PolicyError, load_policies

    where = str(policy_dir) if policy_dir else "the packaged defaults"
    try:
        load_policies(policy_dir)
    except PolicyError as exc:
        return Check("policies", False, f"{where}: " + "; ".join(exc.problems))
    return Check("policies", True, f"{where} are valid")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def run_checks(
    settings: Settings, *, max_runner_lag: float = DEFAULT_MAX_RUNNER_LAG
) -> list[Check]:
    from itilflow.stack import Stack

    stack = Stack(settings)
    if settings.demo and stack.demo_inbox:
        # Where `itilflow up --demo` sends mail and chat when no SMTP server is set.
        settings.smtp_host = "127.0.0.1"
        settings.smtp_port = settings.demo_smtp_port
        if settings.apprise_config is None:
            settings.apprise_config = stack.data_dir / "demo-inbox" / "apprise.yaml"
    assert settings.database_url is not None
    checks = [check_database(settings.database_url), check_migrations(settings.database_url)]
    with _prefect_client(settings, stack.api_url) as api:
        checks.append(check_prefect_server(api))
        checks.append(check_scheduler(api))
        checks.append(check_work_pool(api, settings.work_pool))
    checks.append(check_runner_lag(settings.database_url, max_runner_lag))
    checks.append(check_smtp(settings.smtp_host, settings.smtp_port, use_ssl=settings.smtp_ssl))
    policies = check_policies(settings.policy_dir)
    tags = None
    if policies.ok:
        from itilflow.demo.inbox import chat_tags
        from itilflow.policies import load_policies

        tags = chat_tags(load_policies(settings.policy_dir))
    checks.append(check_apprise(settings.apprise_config, tags))
    checks.append(policies)
    return checks


def cmd_doctor(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.demo:
        overrides["demo"] = True
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        print(f"settings     FAIL: {exc}")
        return 1
    checks = run_checks(settings, max_runner_lag=args.max_runner_lag)
    for check in checks:
        print(check.line())
    return 0 if all(check.ok for check in checks) else 1


def add_doctor_commands(subparsers: argparse._SubParsersAction) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="check a running installation: ok or FAIL per part (exit 0: all ok)"
    )
    doctor.add_argument(
        "--demo", action="store_true", help="the stack runs with --demo (its inbox, its data)"
    )
    doctor.add_argument(
        "--max-runner-lag",
        type=float,
        default=DEFAULT_MAX_RUNNER_LAG,
        help="seconds a due trigger may wait for the runner "
        f"(default {DEFAULT_MAX_RUNNER_LAG:.0f})",
    )
    doctor.set_defaults(run=cmd_doctor)
