"""A change's plan as data: its actions (shell commands and HTTP calls, each with a timeout), steps
with their undo, and the limits every action runs under.

A `ChangePlan` is stored as JSON on a change request and filled from the Prefect UI or the API.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

MAX_TIMEOUT_SECONDS = 3600.0
OUTPUT_LIMIT = 8192
"""Bytes of output kept on a result: the first and the last half, with a marker between."""
HTTP_BODY_LIMIT = 10 * 1024 * 1024
"""Bytes of an HTTP body read at most (`expect_text` is searched in them)."""
KILL_GRACE_SECONDS = 2.0
"""After a time-out the process group gets SIGTERM, then SIGKILL this much later."""
DRAIN_SECONDS = 0.5
"""How long to keep reading output after the command exited (a background child may hold it)."""
REDACT_MIN_LENGTH = 4
"""Secret values at least this long are replaced by `[redacted]` in output and summary."""

REDACTED = "[redacted]"
SENSITIVE_HEADER = re.compile(r"auth|token|secret|key|cookie|session|password", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")]

Phase = Literal["backup", "step", "verify", "rollback", "rollback_verify"]
Outcome = Literal["successful", "rolled_back", "rollback_failed", "backup_failed"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Actions


class ShellAction(StrictModel):
    """A command on the worker's host: `command` runs with `/bin/sh -c`, `argv` without a shell.

    The environment is the containment's allow-list taken from the worker's (PATH, LANG, ...;
    never its secrets), with `env` added on top; `env` values never appear in the result's output
    or summary. Without `cwd` the command runs in a fresh private folder. stdin is empty; stdout
    and stderr are captured together.
    """

    kind: Literal["shell"] = "shell"
    command: str | None = Field(default=None, min_length=1)
    argv: list[str] | None = Field(default=None, min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    expect_exit: int = 0

    @model_validator(mode="after")
    def _command_or_argv(self) -> Self:
        if (self.command is None) == (self.argv is None):
            raise ValueError("give exactly one of 'command' (run with /bin/sh -c) or 'argv'")
        return self

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid environment variable name {name!r}")
        return env

    def describe(self) -> str:
        if self.command is not None:
            return self.command
        return " ".join(self.argv or [])


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
StatusClass = Literal["1xx", "2xx", "3xx", "4xx", "5xx"]


class HttpAction(StrictModel):
    """An HTTP call; ok when the status is in `expect_status` and the body has `expect_text`.

    The JSON key of the request body is `json` (the attribute is `json_body`). Redirects are not
    followed. Values of headers whose name looks secret (Authorization, *token*, *key*, Cookie...)
    never appear in the result.
    """

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    kind: Literal["http"] = "http"
    method: HttpMethod = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any | None = Field(default=None, alias="json")
    body: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_SECONDS)
    expect_status: list[Annotated[int, Field(ge=100, le=599)] | StatusClass] = Field(
        default_factory=lambda: ["2xx"], min_length=1
    )
    """Accepted statuses: codes (`404`) or classes (`"2xx"`); the default is any 2xx."""
    expect_text: str | None = Field(default=None, min_length=1)

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"not a valid URL: {url!r} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
        return url

    @field_validator("headers")
    @classmethod
    def _header_values(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"invalid header name {name!r}")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has a line break or NUL in its value")
        return headers

    @model_validator(mode="after")
    def _one_body(self) -> Self:
        if self.json_body is not None and self.body is not None:
            raise ValueError("give at most one of 'json' and 'body'")
        if self.method == "HEAD" and (self.json_body is not None or self.body is not None):
            raise ValueError("a HEAD request has no body")
        return self

    def describe(self) -> str:
        return f"{self.method} {strip_userinfo(self.url)}"

    def accepts(self, status: int) -> bool:
        return any(
            status == expected if isinstance(expected, int) else f"{status // 100}xx" == expected
            for expected in self.expect_status
        )


Action = Annotated[ShellAction | HttpAction, Field(discriminator="kind")]


class NamedAction(StrictModel):
    """A backup pre-step or a verification check."""

    name: _NAME
    do: Action


class ChangeStep(StrictModel):
    """An implementation step and the step that rolls it back.

    A step without an undo must say so with `irreversible: true`; a rollback cannot go past it.
    """

    name: _NAME
    do: Action
    undo: Action | None = None
    irreversible: bool = False

    @model_validator(mode="after")
    def _undo_or_irreversible(self) -> Self:
        if self.undo is None and not self.irreversible:
            raise ValueError(
                f"step {self.name!r} has no undo: give one, or set 'irreversible: true' "
                "(a rollback then cannot go past this step)"
            )
        if self.undo is not None and self.irreversible:
            raise ValueError(f"step {self.name!r} is irreversible but has an undo: drop one")
        return self


class ChangePlan(StrictModel):
    """Backup pre-steps, implementation steps, verification checks and rollback checks.

    Names are unique within each list (events carry the phase, so a rollback check may reuse a
    verification check's name).
    """

    backup: list[NamedAction] = Field(default_factory=list)
    steps: list[ChangeStep] = Field(min_length=1)
    verify: list[NamedAction] = Field(default_factory=list)
    rollback_verify: list[NamedAction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        for field_name in ("backup", "steps", "verify", "rollback_verify"):
            seen: set[str] = set()
            for item in getattr(self, field_name):
                if item.name in seen:
                    raise ValueError(f"duplicate name {item.name!r} in {field_name}")
                seen.add(item.name)
        return self

    @property
    def irreversible_steps(self) -> list[str]:
        """Names of the steps that cannot be rolled back (for the risk notice and approvers)."""
        return [step.name for step in self.steps if step.irreversible]

    def step(self, name: str) -> ChangeStep:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no implementation step named {name!r}")


# ---------------------------------------------------------------------------------------------
def strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
