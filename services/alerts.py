"""Prometheus Alertmanager webhook (payload version 4) to incidents.

An alert is one incident per occurrence: its fingerprint plus its startsAt. Alertmanager resends
a group at every group_interval and repeat_interval, and more than one replica may deliver it:
those land on the incident already stored. A resolved alert resolves or annotates its incident,
as the routing policy says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session

from itilflow.models import (
    IncidentCreate,
    IncidentStatus,
    add_timeline,
    get_timeline,
    incident_number,
)
from itilflow.models.incident import incident_ids_by_dedup_key
from itilflow.policies import Policies, alert_impact_urgency
from itilflow.services import incident_actions, incidents


class AlertIn(BaseModel):
    """One alert of an Alertmanager webhook (payload version 4)."""

    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 (Alertmanager's names)
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("labels", "annotations")
    @classmethod
    def _no_nul(cls, value: dict[str, str]) -> dict[str, str]:
        # PostgreSQL cannot store NUL in text, and refusing the webhook would lose the alert
        # (or have Alertmanager resend it for ever): drop the character, keep the alert.
        return {key.replace("\x00", ""): text.replace("\x00", "") for key, text in value.items()}


class AlertmanagerWebhook(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""  # noqa: N815
    alerts: list[AlertIn] = Field(max_length=10_000)


class AlertOutcome(BaseModel):
    fingerprint: str
    outcome: Literal["created", "duplicate", "resolved", "annotated", "ignored"]
    id: int | None = None
    number: str | None = None
    url: str | None = None


ACTOR = "alertmanager"

AlertOutcomeName = Literal["created", "duplicate", "resolved", "annotated", "ignored"]
AlertResult = tuple[AlertOutcomeName, int | None]


def alert_dedup_key(alert: AlertIn) -> str:
    """The occurrence: its fingerprint and the instant it started, spelled in UTC however the
    sender spelled it (`Z`, `+00:00`, `+08:00`); a time without an offset is taken as UTC."""
    starts = alert.startsAt
    if starts.tzinfo is None:
        starts = starts.replace(tzinfo=UTC)
    return f"alertmanager:{alert.fingerprint}:{starts.astimezone(UTC).isoformat()}"


def alert_title(alert: AlertIn) -> str:
    summary = alert.annotations.get("summary") or alert.annotations.get("title")
    if summary:
        return summary[:300]
    name = alert.labels.get("alertname", "alert")
    instance = alert.labels.get("instance")
    return f"{name} on {instance}"[:300] if instance else name[:300]


def outcomes_of(
    alerts: Sequence[AlertIn], results: Sequence[AlertResult], url_of: Callable[[int], str]
) -> list[AlertOutcome]:
    return [
        AlertOutcome(
            fingerprint=alert.fingerprint,
            outcome=outcome,
            id=incident_id,
            number=incident_number(incident_id) if incident_id is not None else None,
            url=url_of(incident_id) if incident_id is not None else None,
        )
        for alert, (outcome, incident_id) in zip(alerts, results, strict=True)
    ]


def apply_alert_groups(
    session: Session, groups: Sequence[Sequence[AlertIn]], *, policies: Policies
) -> list[list[AlertResult]]:
    """Store the alerts of several webhooks in the caller's transaction, in order: one dedup
    lookup for all of them and one bulk insert of the new incidents, instead of queries and ORM
    objects per alert. The same occurrence twice (in one webhook or two) lands on one incident.
    Returns (outcome, incident id) per alert, per webhook."""
    known = incident_ids_by_dedup_key(
        session=session, dedup_keys={alert_dedup_key(a) for alerts in groups for a in alerts}
    )
    pending = _NewIncidents()
    results: list[list[AlertResult]] = []
    for alerts in groups:
        webhook_results: list[AlertResult] = []
        for alert in alerts:
            key = alert_dedup_key(alert)
            if alert.status == "firing":
                if key in known:
                    webhook_results.append(("duplicate", known[key]))
                    continue
                if key in pending.new:
                    webhook_results.append(("duplicate", None))
                else:
                    webhook_results.append(("created", None))
                    pending.new[key] = _new_incident(alert, policies)
                pending.waiting.append((webhook_results, len(webhook_results) - 1, key))
                continue
            if key in pending.new:
                # Fired and resolved in the same transaction: store it before resolving it.
                pending.store(session, policies, known)
            webhook_results.append(_resolve_alert(session, alert, known.get(key), policies))
        results.append(webhook_results)
    pending.store(session, policies, known)
    return results


class _NewIncidents:
    """Incidents to open, stored together; the results that wait for their ids get them once
    they are stored."""

    def __init__(self) -> None:
        self.new: dict[str, IncidentCreate] = {}
        # (a webhook's results, index in it, dedup key) of "created" and "duplicate" alike.
        self.waiting: list[tuple[list[AlertResult], int, str]] = []

    def store(self, session: Session, policies: Policies, known: dict[str, int]) -> None:
        if not self.new:
            return
        ids = incidents.open_incidents(
            session=session,
            new=list(self.new.values()),
            dedup_keys=list(self.new),
            policies=policies,
            actor=ACTOR,
        )
        known.update(zip(self.new, ids, strict=True))
        for results, index, key in self.waiting:
            results[index] = (results[index][0], known[key])
        self.new.clear()
        self.waiting.clear()


def _new_incident(alert: AlertIn, policies: Policies) -> IncidentCreate:
    # Unknown impact/severity labels fall back to the routing defaults: a label the policy
    # does not know must not refuse the whole webhook (Alertmanager would resend it forever).
    impact, urgency, category = alert_impact_urgency(
        policies.routing, alert.labels, priority_policy=policies.priority
    )
    return IncidentCreate(
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


def _resolve_alert(
    session: Session, alert: AlertIn, incident_id: int | None, policies: Policies
) -> AlertResult:
    if incident_id is None:
        # Resolved before we ever saw it firing: there is nothing to resolve.
        return "ignored", None
    # Resolutions are rare next to firing alerts: the ORM path of every other action is fine.
    existing = incidents.load_incident(session, incident_id)
    if not existing.is_open:
        return "duplicate", incident_id
    ended = alert.endsAt.isoformat() if alert.endsAt else "now"
    if policies.routing.alertmanager.resolved_action == "resolve" and (
        existing.status != IncidentStatus.on_hold
    ):
        incident_actions.resolve(
            session, existing, actor=ACTOR, note=f"alert resolved at {ended}", policies=policies
        )
        return "resolved", incident_id
    if any(
        entry.kind == "alert_resolved"
        for entry in get_timeline(session=session, incident_id=incident_id)
    ):
        return "duplicate", incident_id
    add_timeline(
        session=session,
        incident_id=incident_id,
        kind="alert_resolved",
        actor=ACTOR,
        message=f"alert resolved at {ended}; the incident stays open for an engineer to resolve",
    )
    return "annotated", incident_id
