"""The choice lists of the Prefect UI's forms (impact, urgency, category), from the policies.

Prefect draws a deployment's form from its flow's signature when `prefect deploy` imports the
flow, so the lists are read then, from the deploying host's policies (`itilflow up` deploys at
every start: a changed policy reaches the forms with the next start). A worker imports the flow
again for each run, so a run is checked against the policies where it runs. Policies are files:
reading them needs no server, database or secret, and a broken one fails the deploy, naming the
file and key, as it fails `itilflow up`.
"""

from __future__ import annotations

from typing import Any, Literal

from itilflow.policies import Policies, load_policies
from itilflow.settings import get_settings


def deploying_policies() -> Policies:
    settings = get_settings()
    return load_policies(settings.policy_dir, stack_urls=settings.stack_urls())


def one_of(values: list[str]) -> Any:
    """Literal[values...]: a select in the form, and the flow refuses anything else."""
    return Literal[tuple(values)]


def form_choices(policies: Policies) -> dict[str, list[str]]:
    return {
        "impact": list(policies.priority.impacts),
        "urgency": list(policies.priority.urgencies),
        "category": sorted(policies.assignment.categories),
    }
