"""Forms for the Prefect UI: report an incident, or act on one, as the API does.

The actor is always PREFECT_OPERATOR: Prefect OSS has no users, so a form run proves only that
someone held the Prefect server's credentials. A form has no field for who acts.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from itilflow.flows.form_choices import deploying_policies, form_choices, one_of
from itilflow.models import IncidentAction, IncidentCreate
from itilflow.notifications.markdown import markdown_text
from itilflow.services.principals import PREFECT_OPERATOR
from itilflow.tasks.incident.apply_incident_action import apply_incident_action
from itilflow.tasks.incident.record_new_incident import record_new_incident

_POLICIES = deploying_policies()
_CHOICES = form_choices(_POLICIES)
# Pre-filled with the policy's defaults (a plain select, no "None" toggle), so a form left as
# it is opens an incident that says its impact and urgency; optional where the policy has none.
DEFAULT_IMPACT = _POLICIES.priority.default_impact
DEFAULT_URGENCY = _POLICIES.priority.default_urgency
Impact = one_of(_CHOICES["impact"]) if DEFAULT_IMPACT else one_of(_CHOICES["impact"]) | None
Urgency = one_of(_CHOICES["urgency"]) if DEFAULT_URGENCY else one_of(_CHOICES["urgency"]) | None
Category = one_of(_CHOICES["category"])


@flow(name="update-incident", flow_run_name="{action} {incident}")
def update_incident(incident: str, action: IncidentAction, note: str = "") -> str:
    """Acknowledge, comment, put on hold, resume, resolve, reopen or close an incident.

    Args:
        incident: the incident's number, e.g. INC-000042
        action: what to do
        note: the comment, the reason for a hold, or the resolution
    """
    return apply_incident_action(incident, action, note, PREFECT_OPERATOR)


@flow(name="report-incident", flow_run_name="report {title}")
def report_incident(
    title: str,
    description: str = "",
    impact: Impact = DEFAULT_IMPACT,
    urgency: Urgency = DEFAULT_URGENCY,
    category: Category | None = None,
    ci: str | None = None,
    reporter_email: str | None = None,
) -> str:
    """Open an incident by hand; it is classified, assigned and notified like any other.

    Args:
        title: what is wrong, in one line
        impact: how much of the business is hit (policy priority.yaml)
        urgency: how fast it hurts (policy priority.yaml)
        category: decides the group (policy assignment.yaml); none: the service desk
        ci: the affected configuration item
        reporter_email: who hears about progress and gets the survey
    """
    number = record_new_incident(
        IncidentCreate(
            title=title,
            description=description,
            impact=impact,
            urgency=urgency,
            category=category,
            ci_name=ci,
            reporter_email=reporter_email,
            source="prefect-ui",
        ),
        PREFECT_OPERATOR,
    )
    create_markdown_artifact(
        key="reported-incident",
        markdown=f"Opened **{number}**: {markdown_text(title)}",
        description=number,
    )
    return number
