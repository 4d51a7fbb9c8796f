"""What an "on_call" audience plans (no engine: the task's function): the person on call's
address beside the routed chat tags, who it was in the plan, and today's chat-only behaviour for
a group without a rotation or a person the directory lost."""

from __future__ import annotations

from datetime import UTC, datetime

from itilflow import clock
from itilflow.models import Engineer, IncidentCreate, session_scope
from itilflow.notifications.plans import request
from itilflow.policies import load_policies
from itilflow.services.incidents import open_incident
from itilflow.tasks.notify.plan_notifications import plan_notifications

CHEN_DAY = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai: chen's day


def incident_of(rt, group: str) -> int:
    with session_scope(rt.engine) as session:
        new = IncidentCreate(
            title="Checkout down", impact="high", urgency="high", reporter_email="owner@example.com"
        )
        incident, _ = open_incident(session=session, new=new, policies=rt.policies, actor="test")
        incident.group_name, incident.priority = group, "P1"
        session.add(incident)
        session.flush()
        return incident.id


def plan_for(incident_id: int, audience: list[str], **extra):
    wanted = request(
        incident_id,
        "escalation",
        audience=audience,
        key="timer:escalation:0:0",
        actor="test",
        extra={"step": 1, "target": "on_call", "overdue_since": "-", **extra},
    )
    (plan,) = plan_notifications.fn([wanted])
    return plan


def test_on_call_adds_the_person_on_call_to_the_mail_and_keeps_the_chat_tags(rt) -> None:
    clock.freeze(CHEN_DAY)
    plan = plan_for(incident_of(rt, "applications"), ["on_call"])
    assert plan["emails"] == ["chen@example.com"]
    assert plan["tags"] == ["oncall-chat", "sms", "applications-chat"]
    assert plan["on_call"] == {
        "group": "applications", "username": "chen", "name": "Chen Jie",
        "email": "chen@example.com", "layer": "daily", "source": "rotation",
    }  # fmt: skip
    assert "escalated to Chen Jie (on_call)" in plan["message"]["text"]
    other = plan_for(incident_of(rt, "applications"), ["reporter"])  # no on_call: unchanged
    assert other["emails"] == ["owner@example.com"] and other.get("on_call") is None


def test_a_group_without_a_rotation_keeps_the_chat_tags_alone(rt, tmp_path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for source in load_policies.__globals__["default_policy_dir"]().iterdir():
        if source.name.endswith(".yaml") and source.name != "oncall.yaml":
            (folder / source.name).write_text(source.read_text("utf-8"), "utf-8")
    rt.policies = load_policies(folder)
    clock.freeze(CHEN_DAY)
    plan = plan_for(incident_of(rt, "applications"), ["on_call"])
    assert plan["emails"] == [] and plan["tags"] == ["oncall-chat", "sms", "applications-chat"]
    assert plan["on_call"] is None
    assert "escalated to on_call" in plan["message"]["text"]


def test_a_deactivated_person_on_call_is_not_mailed_and_the_plan_says_why(rt) -> None:
    with session_scope(rt.engine) as session:
        session.get(Engineer, "chen").active = False
    clock.freeze(CHEN_DAY)
    plan = plan_for(incident_of(rt, "applications"), ["on_call"])
    assert plan["emails"] == [] and plan["tags"]
    assert plan["on_call"] == {"group": "applications", "problem": "'chen' is deactivated"}
