"""Problem review (problem.yaml): which repeated incidents make a problem, who owns it, when it
runs, and when a fixed problem may close; and the pure decisions taken from it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from itilflow.policies._base import CronLine, Name, PolicyModel, TimeZoneName, plain_list, raise_if
from itilflow.policies.durations import Duration
from itilflow.policies.routing import Language, Tag

# What incidents are grouped by: the configuration item, the category, the alert fingerprint.
MatchKind = Literal["ci", "category", "fingerprint"]
MATCH_KINDS: tuple[MatchKind, ...] = ("ci", "category", "fingerprint")
IncidentStatusName = Literal["new", "assigned", "acknowledged", "on_hold", "resolved", "closed"]
ROOT_CAUSE_CATEGORIES: tuple[str, ...] = (
    "hardware",
    "software",
    "configuration",
    "capacity",
    "process",
    "external",
)

# What problem.yaml says when it says nothing; policies/defaults/problem.yaml spells the same out.
DEFAULT_SCHEDULE = "0 9 * * 1"
DEFAULT_TIMEZONE = "Asia/Shanghai"


class DetectionRule(PolicyModel):
    """`min_incidents` incidents with the same key opened within `window` make a problem."""

    enabled: bool = True
    min_incidents: int = Field(3, ge=2, le=1000)
    window: Duration = timedelta(days=7)

    @field_validator("window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta():
            raise ValueError("expected a duration above zero like '7d'")
        return value


class Owner(PolicyModel):
    """Who owns a new problem: one engineer, or a group (its lead reads the group's mail)."""

    engineer: Name | None = None
    group: Name | None = None

    @model_validator(mode="after")
    def _one(self) -> Owner:
        if (self.engineer is None) == (self.group is None):
            raise ValueError("expected exactly one of 'engineer' or 'group'")
        return self


class KnownErrorMatch(PolicyModel):
    """When a new incident matches a known error (`services.problems.match_known_error`)."""

    # Same alert fingerprint, or same configuration item and category, match at once; otherwise
    # this many of the article's keywords must occur in the incident's title or description.
    keyword_hits: int = Field(2, ge=1, le=20)


def _default_detect() -> dict[MatchKind, DetectionRule]:
    return {
        "ci": DetectionRule(),
        "category": DetectionRule(min_incidents=5),
        "fingerprint": DetectionRule(),
    }


DEFAULT_ADVICE = (
    "Check the monitoring thresholds of the affected services, and review the runbook with the "
    "on-call team within one week."
)
# Who gets a post-incident report besides `post_incident.recipients`.
Stakeholder = Literal["reporter", "assignee", "group_lead", "group_manager"]


class PostIncident(PolicyModel):
    """The post-incident (fault analysis) report written when a major incident is resolved."""

    # Resolving an incident of these priorities writes the report; [] writes none.
    priorities: list[Name] = ["P1"]
    stakeholders: list[Stakeholder] = ["reporter", "group_lead", "group_manager"]
    # Addresses that get every report (a service manager's list).
    recipients: list[str] = []
    # None: the incident's language, else problem.yaml's `language`.
    language: Language | None = None
    # Advice given after the problem's workaround and its known error's (if any).
    advice: str = DEFAULT_ADVICE


class ProblemPolicy(PolicyModel):
    # A cron line (minute hour day month weekday) read in `timezone`; prefect.yaml's deployment
    # `review-problems` carries the same schedule (a test keeps the two in step).
    schedule: CronLine = DEFAULT_SCHEDULE
    timezone: TimeZoneName = DEFAULT_TIMEZONE
    detect: dict[MatchKind, DetectionRule] = Field(default_factory=_default_detect)
    # Incidents in these states count towards a cluster (survey follow-ups never count).
    statuses: list[IncidentStatusName] = Field(
        default_factory=lambda: [
            "new",
            "assigned",
            "acknowledged",
            "on_hold",
            "resolved",
            "closed",
        ],
        min_length=1,
    )
    # Owner of a new problem by the category of its incidents; others go to `default_owner`.
    owners: dict[Name, Owner] = {}
    default_owner: Owner = Owner(group="servicedesk")
    # Apprise tags told of every new, growing or reopened problem; its owner gets an email.
    notify_tags: list[Tag] = []
    language: Language = "en"
    # A fixed problem closes once this long has passed since the fix without a new incident.
    quiet_period: Duration = timedelta(days=14)
    known_error_match: KnownErrorMatch = KnownErrorMatch()
    post_incident: PostIncident = PostIncident()

    @model_validator(mode="after")
    def _check(self) -> ProblemPolicy:
        if not any(rule.enabled for rule in self.detect.values()):
            raise_if(
                [(("detect",), f"expected at least one enabled rule of {plain_list(MATCH_KINDS)}")]
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def rules(self) -> dict[str, DetectionRule]:
        """The enabled detection rules, in a fixed order (ci, category, fingerprint)."""
        return {
            kind: self.detect[kind]
            for kind in MATCH_KINDS
            if kind in self.detect and self.detect[kind].enabled
        }


class ProblemOwner(BaseModel):
    model_config = ConfigDict(frozen=True)

    engineer: str | None
    group: str | None
    reason: str


def problem_owner(policy: ProblemPolicy, category: str | None) -> ProblemOwner:
    """The owner of a new problem whose incidents are mostly of `category`."""
    if category is not None and category in policy.owners:
        owner = policy.owners[category]
        return ProblemOwner(
            engineer=owner.engineer, group=owner.group, reason=f"owner of {category} problems"
        )
    owner = policy.default_owner
    return ProblemOwner(engineer=owner.engineer, group=owner.group, reason="default owner")


def quiet_until(policy: ProblemPolicy, resolved_at: datetime) -> datetime:
    """When a problem fixed at `resolved_at` may close if nothing recurs."""
    return resolved_at + policy.quiet_period
