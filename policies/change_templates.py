"""Standard-change templates (change.yaml `templates:`): typed parameters, the CIs a template
may touch, who may request it, and its plan.

A standard change is pre-authorised: it runs a template's plan, with its typed parameters filled
in, on the CIs the template allows, asked for by someone the template names. Anything else is a
normal change and needs approval.

Placeholders are written `{{name}}`. Values are checked against their parameter's type first, then
put in without ever being read by a shell: in a shell `command` a value is one shell word (quoted
with shlex), in an `argv` element, an `env` value, a header or a body it is the text itself (one
argv element at most), in an HTTP `url` it is percent-encoded. Placeholders anywhere else (names,
`cwd`, timeouts, ...) are refused when the policy loads (template_plans.py). The plan's own schema
lives in the executors; the change service checks the built plan against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from itilflow.policies._base import Name, PolicyModel, plain_list, raise_if
from itilflow.policies.template_plans import plan_problems, substituted

# The roles principals hold (the principal service's list; kept here because policies import
# nothing above them).
ROLES: tuple[str, ...] = ("reporter", "agent", "group_lead", "approver", "change_manager", "admin")
Role = Literal["reporter", "agent", "group_lead", "approver", "change_manager", "admin"]

_PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
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
    def _plan(self) -> ChangeTemplate:
        raise_if(
            [
                (("plan", *path), message)
                for path, message in plan_problems(self.plan, self.parameters)
            ]
        )
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
        return substituted(self.plan, checked), checked

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
