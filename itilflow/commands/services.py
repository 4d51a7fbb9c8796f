"""The stack's parts one at a time, for a service manager (deploy/systemd/): `itilflow
prefect-server` and `itilflow deploy`, beside `itilflow worker`, `runner` and `gateway`.

`itilflow up` runs the same commands as its children; under systemd each is a unit of its own,
restarted by systemd (docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pydantic import SecretStr, ValidationError

from itilflow.settings import Settings, SettingsError, ensure_prefect_auth_string


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(str(exc)) from None


def cmd_prefect_server(args: argparse.Namespace) -> int:
    """The Prefect server in the foreground, as `up` starts it: on prefect_host:prefect_port,
    its database ITILFLOW_PREFECT_DATABASE_URL (else SQLite under PREFECT_HOME), asking every
    API call for ITILFLOW_PREFECT_AUTH_STRING (made in the data folder when unset)."""
    from itilflow.stack import Stack

    settings = _settings(args)
    if settings.prefect_auth_string is None:
        settings.prefect_auth_string = SecretStr(ensure_prefect_auth_string(settings.data_dir))
    stack = Stack(settings)
    home = os.environ.get("PREFECT_HOME") or str(stack.data_dir / "prefect")
    Path(home).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_AUTH_STRING": settings.prefect_auth_string.get_secret_value(),
        **stack.server_env(),
    }
    command = stack.prefect_server_command()
    os.execve(command[0], command, env)
    return 0  # not reached: the server replaced this process


def cmd_deploy(args: argparse.Namespace) -> int:
    """The work pool and the deployments of prefect.yaml on ITILFLOW_PREFECT_API_URL's server
    (what `up` does before it starts the workers): once per release, from one host."""
    from itilflow.stack import Stack

    settings = _settings(args)
    if not settings.prefect_api_url:
        raise SettingsError("ITILFLOW_PREFECT_API_URL not set: deploy to which Prefect server?")
    settings.require_prefect_auth()
    Stack(settings).deploy()
    print(f"deployments of prefect.yaml registered on {settings.prefect_api_url}")
    return 0


def add_service_commands(subparsers: argparse._SubParsersAction) -> None:
    subparsers.add_parser(
        "prefect-server",
        help="run the Prefect server (asyncio, h11) with the stack's credentials (systemd)",
    ).set_defaults(run=cmd_prefect_server)
    subparsers.add_parser(
        "deploy", help="create the work pool and register prefect.yaml's deployments (systemd)"
    ).set_defaults(run=cmd_deploy)
