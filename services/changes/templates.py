"""Standard changes as ITIL means them: a pre-authorised template from the change policy, its
parameters checked, on CIs it allows, asked for by someone it names. The plan is built here from
the template, never taken from the request; anything else is a normal change and is approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from itilflow.executors import ChangePlan
from itilflow.models import ConfigurationItem
from itilflow.policies import ChangePolicy, ChangeTemplate, TemplateRefused, may_request_template


class StandardChangeRefused(ValueError):
    """The standard change cannot be made as asked (422); nothing was stored."""


class NotAllowedToRequest(StandardChangeRefused):
    """The requester is not one the template names (403); nothing was stored."""


@dataclass(frozen=True)
class Requester:
    name: str
    roles: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StandardPlan:
    template: str
    parameters: dict[str, Any]
    plan: dict[str, Any]
    ci_names: list[str]


def build_standard_plan(
    session: Session,
    policy: ChangePolicy,
    *,
    template_name: str,
    parameters: dict[str, Any],
    ci_names: list[str],
    requester: Requester,
) -> StandardPlan:
    """The template's plan with the checked parameters, and the change's CIs (those asked for
    and those named by `ci` parameters). Raises NotAllowedToRequest or StandardChangeRefused."""
    try:
        template = policy.template(template_name)
    except LookupError as exc:
        raise StandardChangeRefused(str(exc).strip("'\"")) from None
    if not may_request_template(template, requester.name, requester.roles, requester.groups):
        raise NotAllowedToRequest(
            f"{requester.name} may not request the standard change {template_name!r}: "
            f"{_who_may(template)}"
        )
    try:
        plan, checked = template.build(parameters)
    except TemplateRefused as exc:
        raise StandardChangeRefused(f"parameters of {template_name!r}: {exc}") from None
    cis = list(dict.fromkeys([*ci_names, *template.ci_parameters(checked)]))
    _check_cis(session, template, template_name, cis)
    try:
        ChangePlan.model_validate(plan)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise StandardChangeRefused(
            f"the template {template_name!r} with these parameters is not a valid plan: {problems}"
        ) from None
    return StandardPlan(template_name, checked, plan, cis)


def _check_cis(
    session: Session, template: ChangeTemplate, template_name: str, names: list[str]
) -> None:
    problems = []
    for name in names:
        item = session.get(ConfigurationItem, name)
        if item is None or not item.active:
            problems.append(f"{name} is not an active CI in the directory")
        elif not template.cis.allows(item.name, item.kind, item.criticality):
            problems.append(
                f"{name} ({item.kind}, {item.criticality} criticality) is not a CI the template "
                f"{template_name!r} may touch"
            )
    if problems:
        raise StandardChangeRefused("; ".join(problems))


def _who_may(template: ChangeTemplate) -> str:
    allowed = template.requesters
    parts = [
        f"{label} {', '.join(values)}"
        for label, values in (
            ("people", allowed.people),
            ("groups", allowed.groups),
            ("roles", allowed.roles),
        )
        if values
    ]
    return "it is for " + "; ".join(parts)


def describe_templates(policy: ChangePolicy) -> list[dict[str, Any]]:
    """The templates as the API lists them: name, description, parameters, CIs, requesters."""
    return [
        {
            "name": name,
            "description": template.description,
            "parameters": {
                key: parameter.model_dump(mode="json")
                for key, parameter in template.parameters.items()
            },
            "cis": template.cis.model_dump(mode="json"),
            "requesters": template.requesters.model_dump(mode="json"),
            "plan": template.plan,
        }
        for name, template in sorted(policy.templates.items())
    ]
