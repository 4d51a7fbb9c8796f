"""Change risk, windows and approvals (change.yaml), and the pure decisions taken from them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from itilflow.policies._base import Name, PolicyModel, TimeZoneName, plain_list, raise_if
from itilflow.policies.change_templates import ChangeTemplate
from itilflow.policies.durations import Duration
from itilflow.policies.steps import StepsPolicy

ChangeCategory = Literal["standard", "normal", "emergency"]
RiskLevel = Literal["low", "medium", "high"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RiskPolicy(PolicyModel):
    # Points per affected CI by its criticality; the highest one counts.
    criticality: dict[Name, float] = {"high": 3, "medium": 2, "low": 1}
    category: dict[ChangeCategory, float] = {"standard": 0, "normal": 1, "emergency": 3}
    per_step: float = Field(0.5, ge=0)
    max_step_points: float = Field(3, ge=0)
    # Each change that failed or was rolled back on the same CIs within `history_window`.
    per_failed_change: float = Field(2, ge=0)
    max_failed_points: float = Field(4, ge=0)
    history_window: Duration = timedelta(days=90)
    out_of_window: float = Field(2, ge=0)
    # The score from which each level starts.
    levels: dict[RiskLevel, float] = {"low": 0, "medium": 4, "high": 7}


class MaintenanceWindow(PolicyModel):
    days: list[Weekday]
    start: time
    end: time  # before start means the window runs past midnight


class FreezeWindow(PolicyModel):
    start: date
    end: date  # inclusive
    reason: str
    # refuse: changes other than emergencies are refused; raise: they carry `points` more risk.
    action: Literal["refuse", "raise"] = "refuse"
    points: float = Field(3, ge=0)


Quorum = Literal["any", "all"] | int


class ApprovalStage(PolicyModel):
    name: Name
    approvers: list[Name] = Field(min_length=1)
    # any: one approval passes; all: every approver; N: N of the approvers.
    quorum: Quorum = "any"

    @model_validator(mode="after")
    def _check(self) -> ApprovalStage:
        if isinstance(self.quorum, int) and not 1 <= self.quorum <= len(self.approvers):
            raise_if(
                [
                    (
                        ("quorum",),
                        f"expected 1 to {len(self.approvers)} (the number of "
                        f"approvers), 'any' or 'all', got {self.quorum}",
                    )
                ]
            )
        return self

    @property
    def needed(self) -> int:
        if self.quorum == "any":
            return 1
        if self.quorum == "all":
            return len(self.approvers)
        return int(self.quorum)


class ApprovalPath(PolicyModel):
    stages: list[ApprovalStage] = []
    # A high-risk change also needs these stages (e.g. the CAB for a risky normal change).
    high_risk_stages: list[ApprovalStage] = []


class ApprovalTiming(PolicyModel):
    remind_every: Duration = timedelta(hours=4)
    # After this long without a decision the stage's escalation contact is asked too.
    escalate_after: Duration = timedelta(hours=8)
    escalate_to: Name | None = None
    expire_after: Duration = timedelta(days=3)
    link_valid_for: Duration = timedelta(days=3)


class ApprovalLinks(PolicyModel):
    """How an emailed approval link confirms that the approver is the one deciding."""

    # True: the link's button mails a one-time code to the approver's own address and only the
    # code decides, so a forwarded mail cannot decide as the approver. False: the button decides.
    confirm_by_code: StrictBool = True
    code_valid_for: Duration = timedelta(minutes=10)
    # Wrong codes entered before the code is void (a new one must be asked for).
    code_attempts: StrictInt = Field(5, ge=1, le=20)
    # At most one code per approval request this often (a button held down, a bot posting).
    code_resend_after: Duration = timedelta(minutes=1)
    # Codes one link may ever have: asking for one more locks the link (no codes, no decisions
    # by it) and tells the approver and the change managers. With `code_attempts` this caps the
    # guesses against one link at max_codes_per_link * code_attempts.
    max_codes_per_link: StrictInt = Field(10, ge=1, le=1000)

    @model_validator(mode="after")
    def _check(self) -> ApprovalLinks:
        if self.code_valid_for <= timedelta():
            raise_if([(("code_valid_for",), "expected a duration above 0, like '10m'")])
        return self


class Segregation(PolicyModel):
    """Segregation of duties: who may not approve. A stage left without enough eligible
    approvers waits for a change manager's recorded override."""

    # False: a change's requester is never asked to approve it, and a decision of theirs is
    # refused.
    requester_may_approve: StrictBool = False
    # True: a person counts once across a change's stages; who decided in one stage is not
    # asked in a later one, and a decision of theirs there is refused.
    one_vote_per_person: StrictBool = True


class Acceptance(PolicyModel):
    """The requester's acceptance of an implemented and verified change (the customer's half of
    the double acceptance; the engineers' half is the plan's verification)."""

    # False: a verified change is successful at once, as before acceptance existed.
    required: StrictBool = False
    # How long the requester has; a window that lapses closes the change as accepted by lapse
    # (the `remind-approvers` sweep does it).
    window: Duration = timedelta(days=5)
    # A rejection (a reason is required): "reopen" sends the change back to `submitted` as a new
    # version, so it is assessed, approved and implemented again (the plan may be edited first);
    # "close" records it and closes the change as customer_rejected.
    on_reject: Literal["reopen", "close"] = "reopen"

    @model_validator(mode="after")
    def _check(self) -> Acceptance:
        if self.window <= timedelta():
            raise_if([(("window",), "expected a duration above 0, like '5d'")])
        return self


class ChangePolicy(PolicyModel):
    timezone: TimeZoneName = "UTC"
    risk: RiskPolicy = RiskPolicy()
    maintenance_windows: list[MaintenanceWindow] = []
    freeze_windows: list[FreezeWindow] = []
    approvals: dict[ChangeCategory, ApprovalPath]
    timing: ApprovalTiming = ApprovalTiming()
    approval_links: ApprovalLinks = ApprovalLinks()
    segregation: Segregation = Segregation()
    acceptance: Acceptance = Acceptance()
    # The P1 incident opened when a rollback fails goes to this category's group.
    rollback_failure_category: Name = "software"
    # Apprise tags told of every change's outcome.
    notify_tags: list[Name] = []
    language: Literal["en", "zh_CN"] = "en"
    # The pre-authorised standard changes: a standard change runs one of these, nothing else.
    templates: dict[Name, ChangeTemplate] = {}
    # What every step runs under: environment, OS user, folders, reachable hosts.
    steps: StepsPolicy = StepsPolicy()

    @model_validator(mode="before")
    @classmethod
    def _steps_from_context(cls, data: Any) -> Any:
        # An absent `steps:` is validated like an empty one, so that its default hosts follow
        # the running stack's addresses (the loader's context) rather than the default ports.
        if isinstance(data, dict) and "steps" not in data:
            return {**data, "steps": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> ChangePolicy:
        missing = [c for c in ("standard", "normal", "emergency") if c not in self.approvals]
        if missing:
            raise_if([(("approvals",), f"missing a path for {plain_list(missing)}")])
        return self

    def template(self, name: str) -> ChangeTemplate:
        """The standard-change template `name`; LookupError naming the known ones."""
        if name not in self.templates:
            raise LookupError(
                f"no standard-change template {name!r}; known: "
                f"{plain_list(sorted(self.templates)) or 'none'}"
            )
        return self.templates[name]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RiskAssessment(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    level: RiskLevel
    reasons: list[str]
    refused: str | None = None  # why the change may not go ahead at all


def in_maintenance_window(policy: ChangePolicy, at: datetime) -> bool:
    local = at.astimezone(policy.zone)
    for window in policy.maintenance_windows:
        day = WEEKDAYS[local.weekday()]
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        clock = local.time()
        if window.start <= window.end:
            if day in window.days and window.start <= clock < window.end:
                return True
        elif (day in window.days and clock >= window.start) or (
            yesterday in window.days and clock < window.end
        ):
            return True
    return False


def assess_risk(
    policy: ChangePolicy,
    *,
    category: str,
    ci_criticalities: Sequence[str],
    step_count: int,
    failed_changes: int,
    planned_start: datetime | None,
) -> RiskAssessment:
    """Score a change from its CIs, category, size, history and timing."""
    risk = policy.risk
    reasons: list[str] = []
    score = 0.0
    ci_points = max((risk.criticality.get(c, 0) for c in ci_criticalities), default=0)
    if ci_points:
        worst = max(ci_criticalities, key=lambda c: risk.criticality.get(c, 0))
        reasons.append(f"+{ci_points:g} for a {worst}-criticality CI")
    score += ci_points
    category_points = risk.category.get(category, 0)  # type: ignore[call-overload]
    if category_points:
        reasons.append(f"+{category_points:g} {category} change")
    score += category_points
    step_points = min(step_count * risk.per_step, risk.max_step_points)
    if step_points:
        reasons.append(f"+{step_points:g} for {step_count} steps")
    score += step_points
    failed_points = min(failed_changes * risk.per_failed_change, risk.max_failed_points)
    if failed_points:
        reasons.append(f"+{failed_points:g} for {failed_changes} failed changes on these CIs")
    score += failed_points

    refused = None
    if planned_start is not None:
        if policy.maintenance_windows and not in_maintenance_window(policy, planned_start):
            score += risk.out_of_window
            reasons.append(f"+{risk.out_of_window:g} planned outside the maintenance windows")
        local_day = planned_start.astimezone(policy.zone).date()
        for freeze in policy.freeze_windows:
            if freeze.start <= local_day <= freeze.end:
                if freeze.action == "refuse" and category != "emergency":
                    refused = (
                        f"planned in the change freeze {freeze.start}..{freeze.end}: "
                        f"{freeze.reason}"
                    )
                    reasons.append(refused)
                else:
                    score += freeze.points
                    reasons.append(f"+{freeze.points:g} during the change freeze: {freeze.reason}")
    level: RiskLevel = "low"
    for name, start in sorted(risk.levels.items(), key=lambda item: item[1]):
        if score >= start:
            level = name
    return RiskAssessment(score=round(score, 2), level=level, reasons=reasons, refused=refused)


def approval_stages(policy: ChangePolicy, category: str, level: str) -> list[ApprovalStage]:
    path = policy.approvals[category]  # type: ignore[index]
    return list(path.stages) + (list(path.high_risk_stages) if level == "high" else [])


StageOutcome = Literal["approved", "rejected", "pending"]


def stage_outcome(stage: ApprovalStage, decisions: dict[str, str]) -> StageOutcome:
    """A stage passes at its quorum of approvals, and fails once that can no longer be reached;
    with quorum `any` the first decision decides, either way.

    `decisions` maps approver -> "approve" | "reject" in the order they were taken; decisions by
    others are ignored.
    """
    counted = {who: d for who, d in decisions.items() if who in stage.approvers}
    if stage.quorum == "any" and counted:
        return "approved" if next(iter(counted.values())) == "approve" else "rejected"
    approvals = sum(1 for d in counted.values() if d == "approve")
    rejections = sum(1 for d in counted.values() if d == "reject")
    if approvals >= stage.needed:
        return "approved"
    if len(stage.approvers) - rejections < stage.needed:
        return "rejected"
    return "pending"
