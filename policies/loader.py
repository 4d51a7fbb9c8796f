"""Read a policy directory into `Policies`, or say exactly what is wrong with it.

Every problem in every file is collected before raising, so an owner fixes them in one go.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from itilflow.policies._base import PolicyModel, Problems, format_path, plain_list, raise_if
from itilflow.policies.assignment import AssignmentPolicy
from itilflow.policies.change import ChangePolicy
from itilflow.policies.escalation import EscalationPolicy
from itilflow.policies.inspection import STACK_URLS_CONTEXT, InspectionPolicy
from itilflow.policies.mail import MailPolicy
from itilflow.policies.oncall import OnCallPolicy
from itilflow.policies.priority import PriorityPolicy
from itilflow.policies.proactive import KINDS as PROACTIVE_KINDS
from itilflow.policies.proactive import ProactivePolicy
from itilflow.policies.problem import ProblemPolicy
from itilflow.policies.report import ReportPolicy
from itilflow.policies.routing import RoutingPolicy
from itilflow.policies.sla import SlaPolicy

FILES: dict[str, tuple[str, type[PolicyModel]]] = {
    "priority": ("priority.yaml", PriorityPolicy),
    "sla": ("sla.yaml", SlaPolicy),
    "escalation": ("escalation.yaml", EscalationPolicy),
    "assignment": ("assignment.yaml", AssignmentPolicy),
    "routing": ("routing.yaml", RoutingPolicy),
    "change": ("change.yaml", ChangePolicy),
    "report": ("report.yaml", ReportPolicy),
    "problem": ("problem.yaml", ProblemPolicy),
    "inspection": ("inspection.yaml", InspectionPolicy),
    "oncall": ("oncall.yaml", OnCallPolicy),
    "proactive": ("proactive.yaml", ProactivePolicy),
    "mail": ("mail.yaml", MailPolicy),
}
# Files a folder may leave out: the packaged default is read instead (a policy folder written
# before the monthly report, the problem review or inspections existed keeps loading).
OPTIONAL_FILES = frozenset({"report", "problem", "inspection", "mail"})
# Files a folder may leave out that then mean "none": the packaged on-call rotations name the
# demo's people, which another team's groups must not get; a folder written before proactive
# notices existed may have no template for them in its change.yaml, so they stay off there.
EMPTY_WHEN_MISSING: dict[str, PolicyModel] = {
    "oncall": OnCallPolicy(),
    "proactive": ProactivePolicy(enabled=False),
}


class _SafeLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, but dates stay text for pydantic to parse.

    PyYAML's own date parsing raises a bare ValueError for "2026-05-32", with no line and no key.
    """


_SafeLoader.add_constructor("tag:yaml.org,2002:timestamp", _SafeLoader.construct_yaml_str)


class PolicyError(ValueError):
    """A policy directory that cannot be used; one line per problem, each naming file and key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Policies(BaseModel):
    model_config = ConfigDict(frozen=True)

    priority: PriorityPolicy
    sla: SlaPolicy
    escalation: EscalationPolicy
    assignment: AssignmentPolicy
    routing: RoutingPolicy
    change: ChangePolicy
    report: ReportPolicy
    problem: ProblemPolicy
    inspection: InspectionPolicy
    mail: MailPolicy
    oncall: OnCallPolicy = OnCallPolicy()
    proactive: ProactivePolicy = ProactivePolicy(enabled=False)

    @model_validator(mode="after")
    def _cross_check(self) -> Policies:
        # Paths start with the field name; the loader turns it into the file name.
        problems: list[tuple[tuple[str | int, ...], str]] = []
        am = self.routing.alertmanager
        impacts, urgencies = self.priority.impacts, self.priority.urgencies
        where = ("routing", "alertmanager")
        if am.default_impact not in impacts:
            problems.append(
                (
                    (*where, "default_impact"),
                    f"{am.default_impact!r} is not an impact level in priority.yaml; expected "
                    f"one of {plain_list(impacts)}",
                )
            )
        if am.default_urgency not in urgencies:
            problems.append(
                (
                    (*where, "default_urgency"),
                    f"{am.default_urgency!r} is not an urgency level in priority.yaml; expected "
                    f"one of {plain_list(urgencies)}",
                )
            )
        for severity, urgency in am.severity_urgency.items():
            if urgency not in urgencies:
                problems.append(
                    (
                        (*where, "severity_urgency", severity),
                        f"{urgency!r} is not an urgency level in priority.yaml; expected one of "
                        f"{plain_list(urgencies)}",
                    )
                )
        for group_name, group in self.inspection.groups.items():
            for target_name, target in group.targets.items():
                for index, check in enumerate(target.checks):
                    mapping = self.inspection.incident_for(check)
                    at = ("inspection", "groups", group_name, "targets", target_name, "checks")
                    for key, value, levels in (
                        ("impact", mapping.impact, impacts),
                        ("urgency", mapping.urgency, urgencies),
                    ):
                        if value not in levels:
                            problems.append(
                                (
                                    (*at, index, "incident", key),
                                    f"{value!r} is not an {key} level in priority.yaml; "
                                    f"expected one of {plain_list(levels)}",
                                )
                            )
        problems += self._proactive_templates()
        problems += self._callback_problems()
        raise_if(problems)
        return self

    def _proactive_templates(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Each kind's template is one of change.yaml's, and its parameters are the template's."""
        if not self.proactive.enabled:
            return []
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for kind in PROACTIVE_KINDS:
            rule = self.proactive.rule(kind)
            if not rule.enabled:
                continue
            template = self.change.templates.get(rule.template)
            if template is None:
                known = plain_list(sorted(self.change.templates)) or "none"
                problems.append(
                    (
                        ("proactive", kind, "template"),
                        f"{rule.template!r} is not a template of change.yaml; expected one of "
                        f"{known}",
                    )
                )
                continue
            for name in sorted(set(rule.parameters) - set(template.parameters)):
                problems.append(
                    (
                        ("proactive", kind, "parameters", name),
                        f"not a parameter of the template {rule.template!r}; it has "
                        f"{plain_list(sorted(template.parameters)) or 'none'}",
                    )
                )
        return problems

    def _callback_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        callback = self.routing.survey.callback
        if callback is None or callback.calendar in self.sla.calendars:
            return []
        message = (
            f"{callback.calendar!r} is not a calendar of sla.yaml; expected one of "
            f"{plain_list(self.sla.calendars)}"
        )
        return [(("routing", "survey", "callback", "calendar"), message)]


def default_policy_dir() -> Traversable:
    return files("itilflow.policies").joinpath("defaults")


def load_policies(
    directory: Path | str | None = None, *, stack_urls: Mapping[str, str] | None = None
) -> Policies:
    """Load and validate the policy files; None loads the packaged defaults.

    `stack_urls` are the running stack's own addresses (Settings.stack_urls()) for the
    inspection checks' placeholders ({gateway_url}, ...); without them the defaults are used.
    """
    root: Traversable = default_policy_dir() if directory is None else Path(directory)
    if not root.is_dir():
        raise PolicyError([f"{root}: policy directory not found"])
    problems: list[str] = []
    parsed: dict[str, PolicyModel] = {}
    for field, (filename, model) in FILES.items():
        path = root.joinpath(filename)
        if field in EMPTY_WHEN_MISSING and not path.is_file():
            parsed[field] = EMPTY_WHEN_MISSING[field]
            continue
        if field in OPTIONAL_FILES and not path.is_file():
            path = default_policy_dir().joinpath(filename)
        data = _read_yaml(path, filename, problems)
        if data is None:
            continue
        try:
            parsed[field] = model.model_validate(
                data, context={STACK_URLS_CONTEXT: dict(stack_urls or {})}
            )
        except ValidationError as error:
            problems.extend(
                _line(filename, loc, message) for loc, message in _explain(error, model)
            )
    if problems:
        raise PolicyError(problems)
    try:
        return Policies(**parsed)  # type: ignore[arg-type]
    except ValidationError as error:
        lines = []
        for loc, message in _explain(error, Policies):
            # Cross-file paths start with the Policies field; report them against its file.
            field = str(loc[0]) if loc else ""
            filename = FILES[field][0] if field in FILES else "policies"
            lines.append(_line(filename, loc[1:] if field in FILES else loc, message))
        raise PolicyError(lines) from None


def _read_yaml(path: Traversable, filename: str, problems: list[str]) -> Any:
    if not path.is_file():
        problems.append(f"{filename}: file not found")
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        problems.append(f"{filename}: invalid YAML{where}: {reason}")
        return None
    except (OSError, UnicodeDecodeError) as error:
        problems.append(f"{filename}: cannot be read: {error}")
        return None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else _kind(data)
        problems.append(f"{filename}: expected a mapping of keys at the top level, got {got}")
        return None
    return data


# --- turning pydantic's errors into an owner's words --------------------------------------------


def _explain(
    error: ValidationError, model: type[BaseModel]
) -> list[tuple[tuple[str | int, ...], str]]:
    """(key path, plain message) for each problem pydantic found."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, Problems):
            found.extend(((*loc, *sub_path), message) for sub_path, message in cause.problems)
            continue
        key_error = bool(loc) and loc[-1] == "[key]"
        if key_error:
            loc = loc[:-1]
        message = _message(item, model, loc)
        found.append((loc, f"invalid key: {message}" if key_error else message))
    return found


def _line(filename: str, loc: Sequence[str | int], message: str) -> str:
    path = format_path(loc)
    return f"{filename}: {path}: {message}" if path else f"{filename}: {message}"


def _message(item: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind, value, ctx = item["type"], item.get("input"), item.get("ctx", {})
    got = _got(value)
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        message = f"unknown key {loc[-1]!r}"
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        if allowed:
            message += f"; expected one of {plain_list(allowed)}"
        return message
    if kind == "value_error":
        return str(ctx.get("error", item["msg"]))
    if kind == "literal_error":
        expected = ctx.get("expected", "").replace(" or ", ", ").replace("'", "")
        return f"expected one of {expected}, got {got}"
    simple = {
        "string_type": "expected text",
        "int_type": "expected a whole number",
        "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "dict_type": "expected a mapping of keys",
        "model_type": "expected a mapping of keys",
        "model_attributes_type": "expected a mapping of keys",
        "list_type": "expected a list",
        "tuple_type": "expected a list",
        "date_type": "expected a date like 2026-10-01",
        "date_parsing": "expected a date like 2026-10-01",
        "date_from_datetime_parsing": "expected a date like 2026-10-01",
        "date_from_datetime_inexact": "expected a date like 2026-10-01",
        "string_pattern_mismatch": "expected a name of letters, digits, '-', '_' or '.'",
        "string_too_short": "expected a non-empty name",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    bounds = {
        "greater_than": "above",
        "greater_than_equal": "at least",
        "less_than": "below",
        "less_than_equal": "at most",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"expected a number {bounds[kind]} {limit}, got {got}"
    return f"{item['msg']}, got {got}"


def _got(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict | list | tuple):
        return _kind(value)
    return repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{value!r}"


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Keys a model accepts at `loc`, found by following the type annotations down the path."""
    target: Any = model
    for part in loc:
        target = _unwrap(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = next(
                (f for name, f in target.model_fields.items() if part in (name, f.alias)), None
            )
            if field is None:
                return []
            target = field.annotation
        elif get_origin(target) in (dict, Mapping):
            target = get_args(target)[1]
        elif get_origin(target) in (list, tuple, Sequence):
            target = get_args(target)[0]
        else:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [field.alias or name for name, field in target.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] to reach the type that holds the keys."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation
