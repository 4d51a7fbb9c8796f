"""Prometheus Alertmanager webhook (payload version 4) to incidents.

An alert is one incident per occurrence: its fingerprint plus its startsAt. Alertmanager resends
a group at every group_interval and repeat_interval, and more than one replica may deliver it:
those land on the incident already stored. A resolved alert resolves or annotates its incident,
as the routing policy says.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session

from itilflow import incidents
from itilflow.gateway.schemas import AlertIn, AlertmanagerWebhook, AlertOutcome
from itilflow.models import IncidentStatus, add_timeline, get_incident_by_dedup_key, get_timeline
from itilflow.policies import Policies, alert_impact_urgency

ACTOR = "alertmanager"


def alert_dedup_key(alert: AlertIn) -> str:
    return f"alertmanager:{alert.fingerprint}:{alert.startsAt.isoformat()}"


def alert_title(alert: AlertIn) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("title")
    if summary:
        return summary[:300]
    name = alert.labels.get("alertname", "alert")
    instance = alert.labels.get("instance")
    return f"{name} on {instance}"[:300] if instance else name[:300]


def apply_webhook(
    session: Session,
    webhook: AlertmanagerWebhook,
    *,
    policies: Policies,
    url_of: Callable[[int], str],
) -> list[AlertOutcome]:
    outcomes = []
    for alert in webhook.alerts:
        outcome, incident_id, number = _apply_alert(session, alert, policies)
        outcomes.append(
            AlertOutcome(
                fingerprint=alert.fingerprint,
                outcome=outcome,
                id=incident_id,
                number=number,
                url=url_of(incident_id) if incident_id is not None else None,
            )
        )
    return outcomes


def _apply_alert(
    session: Session, alert: AlertIn, policies: Policies
) -> tuple[str, int | None, str | None]:
    dedup_key = alert_dedup_key(alert)
    existing = get_incident_by_dedup_key(session=session, dedup_key=dedup_key)
    if alert.status == "firing":
        if existing is not None:
            return "duplicate", existing.id, existing.number
        # Unknown impact/severity labels fall back to the routing defaults: a label the policy
        # does not know must not refuse the whole webhook (Alertmanager would resend it forever).
        impact, urgency, category = alert_impact_urgency(
            policies.routing, alert.labels, priority_policy=policies.priority
        )
        new = incidents.NewIncident(
            title=alert_title(alert),
            # Cut to the column sizes (a database that enforces them would refuse the row).
            description=alert.annotations.get("description", "")[:20_000],
            category=category[:64] if category else None,
            ci_name=(alert.labels.get("ci") or alert.labels.get("instance") or "")[:200] or None,
            impact=impact,
            urgency=urgency,
            source="alertmanager",
            fingerprint=alert.fingerprint,
            labels={
                **alert.labels,
                **{f"annotation:{k}": v for k, v in alert.annotations.items()},
                "generatorURL": alert.generatorURL,
            },
        )
        incident, _ = incidents.open_incident(
            session=session, new=new, policies=policies, actor=ACTOR, dedup_key=dedup_key
        )
        return "created", incident.id, incident.number

    if existing is None:
        # Resolved before we ever saw it firing: there is nothing to resolve.
        return "ignored", None, None
    assert existing.id is not None
    if not existing.is_open:
        return "duplicate", existing.id, existing.number
    ended = alert.endsAt.isoformat() if alert.endsAt else "now"
    if policies.routing.alertmanager.resolved_action == "resolve" and (
        existing.status != IncidentStatus.on_hold
    ):
        incidents.resolve(
            session, existing, actor=ACTOR, note=f"alert resolved at {ended}", policies=policies
        )
        return "resolved", existing.id, existing.number
    if any(
        entry.kind == "alert_resolved"
        for entry in get_timeline(session=session, incident_id=existing.id)
    ):
        return "duplicate", existing.id, existing.number
    add_timeline(
        session=session,
        incident_id=existing.id,
        kind="alert_resolved",
        actor=ACTOR,
        message=f"alert resolved at {ended}; the incident stays open for an engineer to resolve",
    )
    return "annotated", existing.id, existing.number
