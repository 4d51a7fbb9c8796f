"""Notification routing, satisfaction surveys and the Alertmanager mapping (routing.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from itilflow.policies._base import PRIORITIES, Name, PolicyModel, Priority, plain_list, raise_if
from itilflow.policies.callback import CallbackPolicy
from itilflow.policies.priority import PriorityPolicy
from itilflow.policies.sla import SlaPolicy

# Apprise tags: letters, digits, dash, underscore, dot.
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$")]
Language = Literal["en", "zh_CN"]


class SurveyPolicy(PolicyModel):
    # Answers run from 1 to `scale`; `low_score` or below counts as unsatisfied.
    scale: int = Field(5, ge=2, le=10)
    low_score: int = Field(2, ge=1)
    follow_up: bool = True
    follow_up_priority: Priority = "P3"
    # The callback in levels (policies/callback.py); when set it replaces the follow-up incident.
    # None (a routing.yaml written before callbacks): the follow-up incident, as before.
    callback: CallbackPolicy | None = None

    @model_validator(mode="after")
    def _check(self) -> SurveyPolicy:
        if self.low_score >= self.scale:
            raise_if([(("low_score",), f"expected a score below the scale ({self.scale})")])
        if self.callback is not None and self.follow_up:
            raise_if(
                [
                    (
                        ("follow_up",),
                        "a callback in levels replaces the follow-up incident: set "
                        "follow_up: false, or remove 'callback'",
                    )
                ]
            )
        return self


class AlertmanagerPolicy(PolicyModel):
    # What a "resolved" notification does: resolve the incident, or only note it on the timeline.
    resolved_action: Literal["resolve", "annotate"] = "resolve"
    severity_label: Name = "severity"
    severity_urgency: dict[str, Name] = {"critical": "high", "warning": "medium", "info": "low"}
    impact_label: Name = "impact"
    category_label: Name = "category"
    default_impact: Name = "medium"
    default_urgency: Name = "medium"


class RoutingPolicy(PolicyModel):
    language: Language = "en"
    priority_tags: dict[Priority, list[Tag]] = {}
    group_tags: dict[Name, list[Tag]] = {}
    email_assignee: bool = True
    survey: SurveyPolicy = SurveyPolicy()
    alertmanager: AlertmanagerPolicy = AlertmanagerPolicy()


class Route(BaseModel):
    model_config = ConfigDict(frozen=True)

    tags: list[str]
    language: str
    email_assignee: bool


def route_notification(policy: RoutingPolicy, priority: str, group: str | None) -> Route:
    """Apprise tags for a notification: the priority's, then the group's, without repeats."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {plain_list(PRIORITIES)}")
    tags = list(policy.priority_tags.get(priority, []))  # type: ignore[call-overload]
    if group is not None:
        tags += policy.group_tags.get(group, [])
    return Route(
        tags=list(dict.fromkeys(tags)),
        language=policy.language,
        email_assignee=policy.email_assignee,
    )


def progress_interval(sla_policy: SlaPolicy, priority: str) -> timedelta | None:
    """How often to remind about progress updates for a priority; None means never."""
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {plain_list(PRIORITIES)}")
    return sla_policy.progress_updates.get(priority)  # type: ignore[call-overload]


def survey_needs_follow_up(policy: SurveyPolicy, score: int) -> bool:
    """True when an answer is unsatisfied and the policy asks for a callback."""
    if not 1 <= score <= policy.scale:
        raise ValueError(f"survey score must be 1..{policy.scale}, got {score}")
    return policy.follow_up and score <= policy.low_score


def survey_needs_callback(policy: SurveyPolicy, score: int) -> bool:
    """True when an answer is unsatisfied and the policy asks for a callback in levels."""
    if not 1 <= score <= policy.scale:
        raise ValueError(f"survey score must be 1..{policy.scale}, got {score}")
    return policy.callback is not None and score <= policy.low_score


def alert_impact_urgency(
    routing_policy: RoutingPolicy,
    labels: Mapping[str, str],
    *,
    priority_policy: PriorityPolicy | None = None,
) -> tuple[str, str, str | None]:
    """(impact, urgency, category) from an Alertmanager alert's labels.

    Severity maps to urgency through `severity_urgency`; the impact label is taken as is. Missing
    or unmapped values fall back to the defaults; given `priority_policy`, an impact or urgency it
    does not know falls back too, so the result always feeds `decide_priority`.
    """
    rules = routing_policy.alertmanager
    lowered = {key.lower(): (value or "").strip() for key, value in labels.items()}

    severity = lowered.get(rules.severity_label.lower(), "").lower()
    urgencies = {key.lower(): value for key, value in rules.severity_urgency.items()}
    urgency = urgencies.get(severity, rules.default_urgency)

    impact = lowered.get(rules.impact_label.lower(), "").lower() or rules.default_impact
    if priority_policy is not None:
        impact = _known(impact, priority_policy.impacts, rules.default_impact)
        urgency = _known(urgency, priority_policy.urgencies, rules.default_urgency)

    category = lowered.get(rules.category_label.lower()) or None
    return impact, urgency, category


def _known(value: str, levels: list[str], default: str) -> str:
    for level in levels:
        if level.lower() == value.lower():
            return level
    return default
