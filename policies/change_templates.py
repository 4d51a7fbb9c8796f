"""Standard-change templates and step containment (change.yaml `templates:` and `steps:`).

A standard change is pre-authorised: it runs a template's plan, with its typed parameters filled
in, on the CIs the template allows, asked for by someone the template names. Anything else is a
normal change and needs approval.

Placeholders are written `{{name}}`. Values are checked against their parameter's type first, then
put in without ever being read by a shell: in a shell `command` a value is one shell word (quoted
with shlex), in an `argv` element, an `env` value, a header or a body it is the text itself (one
argv element at most), in an HTTP `url` it is percent-encoded. Placeholders anywhere else (names,
`cwd`, timeouts, ...) are refused when the policy loads. The plan's own schema lives in the
executors; the change service checks the built plan against it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, StrictInt, ValidationInfo, field_validator, model_validator

from itilflow.policies._base import Name, PolicyModel, plain_list, raise_if
from itilflow.policies.inspection import STACK_URLS_CONTEXT, resolve_stack_urls

# The roles principals hold (the principal service's list; kept here because policies import
# nothing above them).
ROLES: tuple[str, ...] = ("reporter", "agent", "group_lead", "approver", "change_manager", "admin")
Role = Literal["reporter", "agent", "group_lead", "approver", "change_manager", "admin"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"})
MAX_VALUE_LENGTH = 200


class TemplateRefused(ValueError):
    """A template request that cannot be built: unknown template, a bad or missing parameter."""


# ---------------------------------------------------------------------------------------------
# Parameters


class _Parameter(PolicyModel):
    description: str = ""


class StrParameter(_Parameter):
    type: Literal["str"]
    # The whole value must match (re.fullmatch); a value starting with '-' is always refused,
    # since a command could read it as an option.
    pattern: str
    max_length: StrictInt = Field(64, ge=1, le=MAX_VALUE_LENGTH)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise TemplateRefused(f"expected text, got {_shown(value)}")
        if len(value) > self.max_length:
            raise TemplateRefused(f"longer than {self.max_length} characters")
        if value.startswith("-"):
            raise TemplateRefused(f"{_shown(value)} starts with '-' (it could read as an option)")
        if not re.fullmatch(self.pattern, value):
            raise TemplateRefused(f"{_shown(value)} does not match {self.pattern!r}")
        return value


class IntParameter(_Parameter):
    type: Literal["int"]
    min: StrictInt | None = None
    max: StrictInt | None = None

    @model_validator(mode="after")
    def _bounds(self) -> IntParameter:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise_if([(("max",), f"expected at least min ({self.min}), got {self.max}")])
        return self

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TemplateRefused(f"expected a whole number, got {_shown(value)}")
        if isinstance(value, str):
            if not re.fullmatch(r"-?[0-9]{1,18}", value):
                raise TemplateRefused(f"expected a whole number, got {_shown(value)}")
            value = int(value)
        if self.min is not None and value < self.min:
            raise TemplateRefused(f"{value} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise TemplateRefused(f"{value} is above the maximum {self.max}")
        return value


class ChoiceParameter(_Parameter):
    type: Literal["choice"]
    values: list[Annotated[str, Field(min_length=1, max_length=MAX_VALUE_LENGTH)]] = Field(
        min_length=1
    )

    def check(self, value: Any) -> str:
        if value not in self.values:
            raise TemplateRefused(f"expected one of {plain_list(self.values)}, got {_shown(value)}")
        return str(value)


class CiParameter(_Parameter):
    """The name of a CI in the directory that the template allows (checked by the service)."""

    type: Literal["ci"]

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", value):
            raise TemplateRefused(f"expected a CI name, got {_shown(value)}")
        if len(value) > MAX_VALUE_LENGTH:
            raise TemplateRefused(f"longer than {MAX_VALUE_LENGTH} characters")
        return value


Parameter = Annotated[
    StrParameter | IntParameter | ChoiceParameter | CiParameter, Field(discriminator="type")
]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------
# Templates


class AllowedCis(PolicyModel):
    """The CIs a template may touch: named ones, and those of the listed kinds/criticalities
    (both lists, when given, must match)."""

    names: list[Name] = []
    kinds: list[Name] = []
    criticality: list[Name] = []

    @model_validator(mode="after")
    def _some(self) -> AllowedCis:
        if not (self.names or self.kinds or self.criticality):
            raise_if([((), "expected at least one of names, kinds or criticality")])
        return self

    def allows(self, name: str, kind: str, criticality: str) -> bool:
        if name in self.names:
            return True
        if not (self.kinds or self.criticality):
            return False
        return (not self.kinds or kind in self.kinds) and (
            not self.criticality or criticality in self.criticality
        )


class Requesters(PolicyModel):
    """Who may ask for a template: any listed person, member of a listed group, or holder of a
    listed role."""

    people: list[Name] = []
    groups: list[Name] = []
    roles: list[Role] = []

    @model_validator(mode="after")
    def _some(self) -> Requesters:
        if not (self.people or self.groups or self.roles):
            raise_if([((), "expected at least one of people, groups or roles")])
        return self


class ChangeTemplate(PolicyModel):
    description: str = ""
    parameters: dict[Annotated[str, Field(pattern=_PARAMETER_NAME)], Parameter] = {}
    cis: AllowedCis
    requesters: Requesters
    # backup, steps, verify, rollback_verify, in the executors' shape (docs/security.md).
    plan: dict[str, Any]

    @model_validator(mode="after")
    def _placeholders(self) -> ChangeTemplate:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if not isinstance(self.plan.get("steps"), list) or not self.plan["steps"]:
            problems.append((("plan", "steps"), "expected a list of at least one step"))
        for path, text, how in _strings(self.plan):
            for match in PLACEHOLDER.finditer(text):
                name = match.group(1)
                where = ("plan", *path)
                if name not in self.parameters:
                    problems.append(
                        (
                            where,
                            f"unknown parameter {{{{{name}}}}}; declared: "
                            f"{plain_list(self.parameters) or 'none'}",
                        )
                    )
                elif how is None:
                    problems.append(
                        (
                            where,
                            "parameters may be used only in a shell command, argv or env "
                            "value, or an HTTP url, header or body",
                        )
                    )
            if how == "command" and (quoted := _placeholder_in_quotes(text)):
                problems.append(
                    (
                        ("plan", *path),
                        f"{quoted} is inside quotes: write it bare, its value is "
                        "quoted for the shell",
                    )
                )
        problems.extend(_shell_scripts_with_parameters(self.plan))
        raise_if(problems)
        return self

    def build(self, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The plan with `values` put in, and the checked values. Raises TemplateRefused naming
        each missing, unknown or invalid parameter."""
        problems: list[str] = []
        checked: dict[str, Any] = {}
        for name in sorted(set(values) - set(self.parameters)):
            problems.append(f"{name}: not a parameter of this template")
        for name, parameter in self.parameters.items():
            if name not in values:
                problems.append(f"{name}: required ({parameter.type})")
                continue
            try:
                checked[name] = parameter.check(values[name])
            except TemplateRefused as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise TemplateRefused("; ".join(problems))
        return _substituted(self.plan, checked), checked

    def ci_parameters(self, checked: Mapping[str, Any]) -> list[str]:
        return [str(checked[n]) for n, p in self.parameters.items() if p.type == "ci"]


def may_request_template(
    template: ChangeTemplate, principal_name: str, roles: frozenset[str], groups: frozenset[str]
) -> bool:
    """True when the principal is named, in a named group, or holds a named role. `roles` are
    every role held, implied ones included."""
    allowed = template.requesters
    return (
        principal_name in allowed.people
        or bool(groups & set(allowed.groups))
        or bool(roles & set(allowed.roles))
    )


# ---------------------------------------------------------------------------------------------
# Where placeholders may stand, and how a value goes in there

_Path = tuple[str | int, ...]


def _strings(plan: Any) -> Iterator[tuple[_Path, str, str | None]]:
    """Every string of the plan with its path and how a value goes in (None: not allowed)."""
    for path, action in _actions(plan):
        kind = action.get("kind", "shell")
        for key, value in action.items():
            how = _POSITIONS.get((kind, key))
            yield from _leaves((*path, key), value, how)
    for path, text in _leaves_outside_actions(plan):
        yield path, text, None


def _actions(plan: Any) -> Iterator[tuple[_Path, dict[str, Any]]]:
    if not isinstance(plan, dict):
        return
    for section in ("backup", "steps", "verify", "rollback_verify"):
        items = plan.get(section)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            for key in ("do", "undo"):
                if isinstance(item.get(key), dict):
                    yield (section, index, key), item[key]


def _leaves(path: _Path, value: Any, how: str | None) -> Iterator[tuple[_Path, str, str | None]]:
    if isinstance(value, str):
        yield path, value, how
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves((*path, key), item, how)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves((*path, index), item, how)


def _leaves_outside_actions(plan: Any) -> Iterator[tuple[_Path, str]]:
    """Strings that are not inside an action (step names, unknown keys)."""
    if not isinstance(plan, dict):
        return
    for section, items in plan.items():
        if not isinstance(items, list):
            yield from ((p, t) for p, t, _ in _leaves((section,), items, None))
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                yield from ((p, t) for p, t, _ in _leaves((section, index), item, None))
                continue
            for key, value in item.items():
                if key in ("do", "undo") and isinstance(value, dict):
                    continue
                yield from ((p, t) for p, t, _ in _leaves((section, index, key), value, None))


_POSITIONS: dict[tuple[str, str], str] = {
    ("shell", "command"): "command",
    ("shell", "argv"): "text",
    ("shell", "env"): "text",
    ("http", "url"): "url",
    ("http", "headers"): "text",
    ("http", "body"): "text",
    ("http", "json"): "text",
}
_PUT_IN: dict[str, Callable[[str], str]] = {
    "command": shlex.quote,
    "text": lambda value: value,
    "url": lambda value: quote(value, safe=""),
}


def _substituted(plan: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    def fill(value: Any, how: str | None) -> Any:
        if isinstance(value, str) and how is not None:
            put_in = _PUT_IN[how]
            return PLACEHOLDER.sub(lambda m: put_in(str(values[m.group(1)])), value)
        if isinstance(value, dict):
            return {key: fill(item, how) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item, how) for item in value]
        return value

    built: dict[str, Any] = {}
    for section, items in plan.items():
        if not isinstance(items, list):
            built[section] = items
            continue
        built[section] = []
        for item in items:
            item = dict(item)
            for key in ("do", "undo"):
                action = item.get(key)
                if isinstance(action, dict):
                    kind = action.get("kind", "shell")
                    filled = {k: fill(v, _POSITIONS.get((kind, k))) for k, v in action.items()}
                    item[key] = {"kind": kind, **filled}
            built[section].append(item)
    return built


def _placeholder_in_quotes(command: str) -> str | None:
    """The first placeholder that stands inside single or double quotes of a shell command."""
    quote_char: str | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if char == "\\" and quote_char != "'":
            index += 2
            continue
        if quote_char is None and char in "'\"":
            quote_char = char
        elif char == quote_char:
            quote_char = None
        elif quote_char is not None and (match := PLACEHOLDER.match(command, index)):
            return match.group(0)
        index += 1
    return None


def _shell_scripts_with_parameters(plan: dict[str, Any]) -> Iterator[tuple[_Path, str]]:
    """argv that hands a script with a placeholder to a shell (`sh -c "...{{x}}"`): the value
    would be read as shell code. Such a step must use `command`, where values are quoted."""
    for path, action in _actions(plan):
        argv = action.get("argv")
        if action.get("kind", "shell") != "shell" or not isinstance(argv, list) or not argv:
            continue
        program = str(argv[0]).rsplit("/", 1)[-1]
        if program not in SHELLS:
            continue
        for index, element in enumerate(argv[1:], start=1):
            if isinstance(element, str) and PLACEHOLDER.search(element):
                yield (
                    (*path, "argv", index),
                    f"a parameter in the arguments of the shell {program!r} could be run as "
                    "code: use `command` (values are quoted) or run the program directly",
                )


# ---------------------------------------------------------------------------------------------
# Step containment

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
