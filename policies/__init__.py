"""Policies process owners edit as YAML, and the pure decisions taken from them.

Nothing here does I/O except `load_policies`; everything else is a function of its arguments, so it
is tested without the engine and can recompute history under another policy.
"""

from itilflow.policies._base import PRIORITIES
from itilflow.policies.assignment import (
    Assignment,
    AssignmentPolicy,
    Candidate,
    CategoryRule,
    choose_assignee,
)
from itilflow.policies.calendars import Calendar, CalendarSpec
from itilflow.policies.callback import (
    OUTCOMES,
    CallbackLevel,
    CallbackPolicy,
    after_level,
    level_due,
)
from itilflow.policies.change import (
    Acceptance,
    ApprovalLinks,
    ApprovalStage,
    ChangePolicy,
    RiskAssessment,
    Segregation,
    approval_stages,
    assess_risk,
    in_maintenance_window,
    stage_outcome,
)
from itilflow.policies.change_templates import (
    ChangeTemplate,
    TemplateRefused,
    may_request_template,
)
from itilflow.policies.change_windows import NoAllowedStart, next_allowed_start
from itilflow.policies.durations import Duration, format_duration, parse_duration
from itilflow.policies.escalation import (
    EscalationChain,
    EscalationPolicy,
    EscalationSnapshot,
    EscalationStep,
    PlannedEscalation,
    escalation_schedule,
    snapshot_escalation,
)
from itilflow.policies.inspection import InspectionPolicy
from itilflow.policies.loader import Policies, PolicyError, default_policy_dir, load_policies
from itilflow.policies.mail import DONE_KEYWORD, MailPolicy, mailbox_password
from itilflow.policies.priority import PriorityPolicy, decide_priority
from itilflow.policies.problem import (
    ROOT_CAUSE_CATEGORIES,
    ProblemOwner,
    ProblemPolicy,
    problem_owner,
    quiet_until,
)
from itilflow.policies.report import ReportPolicy
from itilflow.policies.routing import (
    AlertmanagerPolicy,
    Route,
    RoutingPolicy,
    SurveyPolicy,
    alert_impact_urgency,
    progress_interval,
    route_notification,
    survey_needs_callback,
    survey_needs_follow_up,
)
from itilflow.policies.sla import (
    CLOCK_KINDS,
    SlaFigures,
    SlaPolicy,
    SlaTarget,
    StatusEvent,
    compute_sla,
    sla_deadline,
)
from itilflow.policies.steps import StepsPolicy

# The design note calls the schedule's entries PlannedStep.
PlannedStep = PlannedEscalation

__all__ = [
    "OUTCOMES",
    "CallbackLevel",
    "CallbackPolicy",
    "after_level",
    "level_due",
    "DONE_KEYWORD",
    "MailPolicy",
    "mailbox_password",
    "ApprovalLinks",
    "ApprovalStage",
    "ChangePolicy",
    "ChangeTemplate",
    "StepsPolicy",
    "TemplateRefused",
    "may_request_template",
    "NoAllowedStart",
    "RiskAssessment",
    "Acceptance",
    "Segregation",
    "approval_stages",
    "assess_risk",
    "in_maintenance_window",
    "next_allowed_start",
    "stage_outcome",
    "CLOCK_KINDS",
    "PRIORITIES",
    "AlertmanagerPolicy",
    "Assignment",
    "AssignmentPolicy",
    "Calendar",
    "CalendarSpec",
    "Candidate",
    "CategoryRule",
    "Duration",
    "EscalationChain",
    "EscalationPolicy",
    "EscalationSnapshot",
    "EscalationStep",
    "PlannedEscalation",
    "PlannedStep",
    "Policies",
    "InspectionPolicy",
    "PolicyError",
    "PriorityPolicy",
    "ProblemOwner",
    "ProblemPolicy",
    "ROOT_CAUSE_CATEGORIES",
    "problem_owner",
    "quiet_until",
    "ReportPolicy",
    "Route",
    "RoutingPolicy",
    "SlaFigures",
    "SlaPolicy",
    "SlaTarget",
    "StatusEvent",
    "SurveyPolicy",
    "alert_impact_urgency",
    "choose_assignee",
    "compute_sla",
    "decide_priority",
    "default_policy_dir",
    "escalation_schedule",
    "format_duration",
    "load_policies",
    "parse_duration",
    "progress_interval",
    "route_notification",
    "sla_deadline",
    "snapshot_escalation",
    "survey_needs_callback",
    "survey_needs_follow_up",
]
