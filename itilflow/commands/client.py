"""The CLI's client commands: `itilflow incident ...` and `itilflow change ...`.

They only call the gateway's HTTP API, so they need its URL (ITILFLOW_API_URL, else
ITILFLOW_PUBLIC_URL, else the gateway's host and port) and a token (ITILFLOW_API_TOKEN, else
the one `itilflow up --demo` keeps in the data folder's secrets.env), never the secret key that
signs links: that stays with the server.

Commands that create something print its number alone on stdout, so that a shell can keep it:
`INC=$(itilflow incident open --title ...)`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from itilflow.settings import DEMO_SECRETS_FILE, Settings, SettingsError

# The incident actions of POST /api/incidents/{ref}/{action} (models.incident.IncidentAction; a
# test keeps the two in step: importing the models here would slow every command).
INCIDENT_ACTIONS = ("acknowledge", "comment", "hold", "resume", "resolve", "reopen", "close")


class ClientError(RuntimeError):
    """The gateway could not be reached or refused the request; the message says which."""


def client_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(str(exc)) from None


def api_token(settings: Settings) -> tuple[str, str]:
    """The token and where it was found: ITILFLOW_API_TOKEN, else the demo's secrets file."""
    if settings.api_token is not None and settings.api_token.get_secret_value():
        return settings.api_token.get_secret_value(), "ITILFLOW_API_TOKEN"
    path = settings.data_dir.resolve() / DEMO_SECRETS_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "ITILFLOW_API_TOKEN" and value.strip():
                return value.strip(), str(path)
    raise SettingsError(
        "no API token: ITILFLOW_API_TOKEN is not set (in the environment or .env) and "
        f"{path} {'holds none' if path.exists() else 'does not exist'} (`itilflow up --demo` "
        "writes it there; --data-dir or ITILFLOW_DATA_DIR says where the data folder is)"
    )


class Api:
    """The gateway's API with the client's token; errors become ClientError."""

    def __init__(self, settings: Settings) -> None:
        token, self.token_from = api_token(settings)
        self.url = settings.client_api_url
        self.http = httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise ClientError(
                f"cannot reach the gateway at {self.url} ({exc or type(exc).__name__}); is "
                "`itilflow up` running? (ITILFLOW_API_URL or ITILFLOW_PUBLIC_URL says where it is)"
            ) from None
        if response.status_code == 401:
            raise ClientError(
                f"the gateway at {self.url} refused the API token from {self.token_from} (401)"
            )
        if response.status_code not in expect:
            raise ClientError(f"{method} {path}: {response.status_code}: {_detail(response)}")
        return response.json()


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text[:500]
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', [])[1:])}: {item.get('msg')}"
            for item in detail
        )
    return str(detail)


def cmd_incident_open(args: argparse.Namespace) -> int:
    fields = ("title", "description", "category", "ci", "impact", "urgency", "priority")
    body = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    if args.reporter_email:
        body["reporter_email"] = args.reporter_email
    ref = Api(client_settings(args)).call("POST", "/api/incidents", json=body, expect=(200, 201))
    print(ref["number"])
    return 0


def cmd_incident_show(args: argparse.Namespace) -> int:
    api = Api(client_settings(args))
    incident = api.call("GET", f"/api/incidents/{args.incident}")
    print(
        f"{incident['number']} {incident['priority'] or '--'} {incident['status']}: "
        f"{incident['title']}"
    )
    print(
        f"  group: {incident['group'] or '--'}  assignee: {incident['assignee'] or '--'}"
        f"  ci: {incident['ci'] or '--'}"
    )
    for entry in api.call("GET", f"/api/incidents/{args.incident}/timeline"):
        print(f"  {entry['at'][:19]}  {entry['kind']:<22} {entry['message']}")
    return 0


def cmd_incident_action(args: argparse.Namespace) -> int:
    body = {"note": args.note or ""}  # who acts is the token's owner
    incident = Api(client_settings(args)).call(
        "POST", f"/api/incidents/{args.incident}/{args.action}", json=body
    )
    print(f"{incident['number']} {incident['status']}")
    return 0


def cmd_change_submit(args: argparse.Namespace) -> int:
    import yaml

    try:
        body = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ClientError(f"{args.file}: {exc}") from None
    if not isinstance(body, dict):
        raise ClientError(f"{args.file}: expected a mapping of keys (a change), see docs/examples")
    if args.start:
        body["planned_start"] = planned_start(args.start)
    for key in ("planned_start", "planned_end"):
        if body.get(key) is not None:
            body[key] = str(body[key])
    change = Api(client_settings(args)).call("POST", "/api/changes", json=body, expect=(201,))
    print(change["number"])
    return 0


def planned_start(given: str) -> str:
    """`now` as this moment in UTC, or the time given (the gateway checks its shape)."""
    if given == "now":
        return datetime.now(UTC).isoformat(timespec="seconds")
    return given


def cmd_change_show(args: argparse.Namespace) -> int:
    api = Api(client_settings(args))
    data = api.call("GET", f"/api/changes/{args.change}")
    print(f"{data['number']} v{data['version']} {data['status']}: {data['title']}")
    for entry in api.call("GET", f"/api/changes/{args.change}/timeline"):
        print(f"  {entry['at'][:19]}  {entry['kind']:<22} {entry['message']}")
    return 0


def run_client(command: Any) -> Any:
    """Wrap a client command: a ClientError is one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ClientError as exc:
            print(f"itilflow: {exc}", file=sys.stderr)
            return 1

    return run


def add_client_commands(sub: Any) -> None:
    incident = sub.add_parser(
        "incident", help="open, show and act on incidents through the API (URL and token only)"
    )
    incident_sub = incident.add_subparsers(dest="incident_command", required=True)
    open_ = incident_sub.add_parser("open", help="open an incident; prints its number")
    open_.add_argument("--title", required=True)
    open_.add_argument("--description")
    open_.add_argument("--category", help="e.g. software (assignment.yaml picks the group)")
    open_.add_argument("--ci", help="the configuration item, e.g. shop-web-01")
    open_.add_argument("--impact", help="e.g. high (priority.yaml)")
    open_.add_argument("--urgency", help="e.g. high (priority.yaml)")
    open_.add_argument("--priority", help="P1..P4; omit to derive it from impact x urgency")
    open_.add_argument("--reporter-email", help="who hears about it and gets the survey")
    open_.set_defaults(run=run_client(cmd_incident_open))
    show = incident_sub.add_parser("show", help="an incident's state and timeline")
    show.add_argument("incident", help="e.g. INC-000005")
    show.set_defaults(run=run_client(cmd_incident_show))
    for action in INCIDENT_ACTIONS:
        act = incident_sub.add_parser(action, help=f"{action} an incident")
        act.add_argument("incident", help="e.g. INC-000005")
        act.add_argument("--note", help="on the timeline (and in the notifications)")
        act.set_defaults(run=run_client(cmd_incident_action), action=action)

    change = sub.add_parser("change", help="submit a change request or show one")
    change_sub = change.add_subparsers(dest="change_command", required=True)
    submit = change_sub.add_parser("submit", help="submit a change from a YAML file")
    submit.add_argument("file", help="e.g. docs/examples/change.yaml")
    submit.add_argument(
        "--start",
        help="its planned start: `now` or a time with its offset (2026-12-05T22:00:00+08:00); "
        "without one (here or in the file) it waits for the next maintenance window",
    )
    submit.set_defaults(run=run_client(cmd_change_submit))
    show_change = change_sub.add_parser("show", help="a change's status and timeline")
    show_change.add_argument("change", help="e.g. CHG-000002")
    show_change.set_defaults(run=run_client(cmd_change_show))
