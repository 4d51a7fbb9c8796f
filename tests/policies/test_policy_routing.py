from datetime import timedelta

import pytest

from itilflow.policies import (
    Policies,
    RoutingPolicy,
    alert_impact_urgency,
    decide_priority,
    progress_interval,
    route_notification,
    survey_needs_follow_up,
)


def test_priority_and_group_tags(defaults: Policies) -> None:
    route = route_notification(defaults.routing, "P1", "dba")
    assert route.tags == ["oncall-chat", "sms", "dba-chat"]
    assert route.language == "en"
    assert route.email_assignee


def test_tags_are_not_repeated() -> None:
    policy = RoutingPolicy.model_validate(
        {"priority_tags": {"P2": ["chat", "sms"]}, "group_tags": {"net": ["sms", "net"]}}
    )
    assert route_notification(policy, "P2", "net").tags == ["chat", "sms", "net"]


def test_no_tags_for_quiet_priorities_and_unknown_groups(defaults: Policies) -> None:
    assert route_notification(defaults.routing, "P4", None).tags == []
    assert route_notification(defaults.routing, "P4", "nobody").tags == []


def test_language_and_email_come_from_the_policy() -> None:
    policy = RoutingPolicy.model_validate({"language": "zh_CN", "email_assignee": False})
    route = route_notification(policy, "P3", None)
    assert (route.language, route.email_assignee, route.tags) == ("zh_CN", False, [])


def test_unknown_priority(defaults: Policies) -> None:
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        route_notification(defaults.routing, "urgent", None)
    with pytest.raises(ValueError, match="unknown priority 'P5'"):
        progress_interval(defaults.sla, "P5")


def test_progress_interval(defaults: Policies) -> None:
    assert progress_interval(defaults.sla, "P1") == timedelta(minutes=30)
    assert progress_interval(defaults.sla, "P2") == timedelta(hours=2)
    assert progress_interval(defaults.sla, "P3") is None
    assert progress_interval(defaults.sla, "P4") is None


def test_survey_follow_up(defaults: Policies) -> None:
    # The defaults call back in levels instead (issue 15); a follow-up incident is what a
    # routing.yaml without a callback and with follow_up: true still asks for.
    assert defaults.routing.survey.callback is not None
    assert not survey_needs_follow_up(defaults.routing.survey, 1)
    survey = defaults.routing.survey.model_copy(update={"callback": None, "follow_up": True})
    assert (survey.scale, survey.low_score, survey.follow_up_priority) == (5, 2, "P3")
    assert survey_needs_follow_up(survey, 1)
    assert survey_needs_follow_up(survey, 2)
    assert not survey_needs_follow_up(survey, 3)
    assert not survey_needs_follow_up(survey.model_copy(update={"follow_up": False}), 1)
    with pytest.raises(ValueError, match="1..5"):
        survey_needs_follow_up(survey, 6)


def test_alert_labels_map_to_impact_urgency_category(defaults: Policies) -> None:
    labels = {
        "alertname": "DiskFull",
        "severity": "critical",
        "impact": "high",
        "category": "hardware",
    }
    impact, urgency, category = alert_impact_urgency(defaults.routing, labels)
    assert (impact, urgency, category) == ("high", "high", "hardware")
    assert decide_priority(defaults.priority, impact, urgency) == "P1"


def test_alert_labels_fall_back_to_defaults(defaults: Policies) -> None:
    assert alert_impact_urgency(defaults.routing, {"alertname": "X"}) == ("medium", "medium", None)
    warning = alert_impact_urgency(defaults.routing, {"severity": "Warning"})
    assert warning == ("medium", "medium", None)
    assert alert_impact_urgency(defaults.routing, {"severity": "info"})[1] == "low"
    assert alert_impact_urgency(defaults.routing, {"severity": "page"})[1] == "medium"


def test_unknown_impact_falls_back_when_levels_are_known(defaults: Policies) -> None:
    labels = {"severity": "critical", "impact": "galactic"}
    assert alert_impact_urgency(defaults.routing, labels)[0] == "galactic"
    impact, urgency, _ = alert_impact_urgency(
        defaults.routing, labels, priority_policy=defaults.priority
    )
    assert (impact, urgency) == ("medium", "high")


def test_label_names_are_configurable() -> None:
    policy = RoutingPolicy.model_validate(
        {
            "alertmanager": {
                "severity_label": "level",
                "severity_urgency": {"p1": "high"},
                "impact_label": "blast_radius",
                "category_label": "team",
                "default_impact": "low",
                "default_urgency": "low",
                "resolved_action": "annotate",
            }
        }
    )
    labels = {"level": "P1", "blast_radius": "high", "team": "network"}
    assert alert_impact_urgency(policy, labels) == ("high", "high", "network")
    assert alert_impact_urgency(policy, {}) == ("low", "low", None)
    assert policy.alertmanager.resolved_action == "annotate"
