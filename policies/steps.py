"""Step containment (change.yaml `steps:`): what every step of every change runs under,
whoever wrote its plan. The executors apply it (executors/containment.py)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from itilflow.policies._base import Name, PolicyModel, plain_list
from itilflow.policies.inspection import STACK_URLS_CONTEXT, resolve_stack_urls

_FORBIDDEN_ENV = re.compile(r"^(ITILFLOW_|PREFECT_)|(TOKEN|SECRET|PASSWORD|KEY)", re.IGNORECASE)
_HOST_PATTERN = re.compile(
    r"^(\*\.)?[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$"
)


class StepsPolicy(PolicyModel):
    """What a change's steps run under, whoever wrote the plan."""

    # Names copied from the worker's environment into a shell step's; the step's own `env` is
    # added. Nothing else of the worker's (its secrets) reaches a step.
    environment: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = [
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
    ]
    # The OS user (and group) shell steps run as; empty: the worker's own user.
    run_as: Name | None = None
    run_as_group: Name | None = None
    # Folders a step's `cwd` may be in; a step without one runs in a fresh private folder.
    cwd_roots: list[Annotated[str, Field(pattern=r"^/")]] = []
    # Hosts HTTP steps may reach: "host", "host:port", "*.domain", "[::1]", or a placeholder for
    # the stack's own addresses ({gateway_url}, {prefect_api_url}, {node_exporter_url}).
    http_hosts: list[str] = Field(
        default=["localhost", "127.0.0.1", "[::1]", "{gateway_url}", "{prefect_api_url}"],
        validate_default=True,
    )

    @field_validator("environment")
    @classmethod
    def _no_secrets(cls, names: list[str]) -> list[str]:
        bad = [name for name in names if _FORBIDDEN_ENV.search(name)]
        if bad:
            raise ValueError(
                f"{plain_list(bad)} may hold secrets of itilflow or Prefect: steps never get "
                "them (give a step what it needs in its own env)"
            )
        return names

    @field_validator("http_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, list):
            return value
        urls = (info.context or {}).get(STACK_URLS_CONTEXT)
        hosts: list[Any] = []
        for entry in value:
            if isinstance(entry, str) and entry.startswith("{"):
                entry = _host_port(resolve_stack_urls(entry, urls))
            if isinstance(entry, str) and not _HOST_PATTERN.match(entry):
                raise ValueError(
                    f"expected a host, host:port, *.domain or a stack placeholder, got {entry!r}"
                )
            hosts.append(entry.lower() if isinstance(entry, str) else entry)
        return hosts


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"
