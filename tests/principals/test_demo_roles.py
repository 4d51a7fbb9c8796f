"""The demo's roles (itilflow/demo/data.yaml `roles`): the demo people can do what the README's
story shows, a locked link's notice goes to the demo's change manager rather than falling back
to escalate_to, and loading the demo again grants nothing twice."""

from __future__ import annotations

from typing import Any

from itilflow.demo import DEMO_GRANTOR, demo_data, grant_demo_roles
from itilflow.models import session_scope
from itilflow.policies import default_policy_dir, load_policies
from itilflow.services.changes.approval_codes import lock_contacts
from itilflow.services.principals import list_grants, people_with_role, principal_named


def roles_of(rt: Any, name: str) -> frozenset[str]:
    with session_scope(rt.engine) as session:
        principal = principal_named(session=session, name=name, kind="person")
    assert principal is not None, name
    return principal.roles


def test_the_demo_people_hold_the_roles_of_the_story(rt: Any) -> None:
    # The tests' directory (the rt fixture) is the demo's people without their roles.
    assert roles_of(rt, "chen") == frozenset()
    grant_demo_roles(rt.settings)

    # Chen approves the demo change as its technical lead, leads a group and works incidents.
    assert {"approver", "group_lead", "agent", "reporter"} <= roles_of(rt, "chen")
    assert "change_manager" not in roles_of(rt, "chen")
    # Li works the service desk's incidents: no approving, leading or managing changes.
    assert roles_of(rt, "li") == {"agent", "reporter"}
    # Zhou, every group's manager, is the one change manager.
    assert "change_manager" in roles_of(rt, "zhou")
    with session_scope(rt.engine) as session:
        assert people_with_role(session=session, role="change_manager") == ["zhou"]
        # Every approver change.yaml names holds the approver role.
        change = load_policies(default_policy_dir()).change
        named = {
            person
            for path in change.approvals.values()
            for stage in [*path.stages, *path.high_risk_stages]
            for person in stage.approvers
        }
        approvers = set(people_with_role(session=session, role="approver"))
        assert named <= approvers, named - approvers
        # A locked link tells the change manager: no fallback to escalate_to.
        assert lock_contacts(session, rt.policies) == ["zhou"]
    # Nobody the demo names is an admin.
    assert not any(
        "admin" in roles_of(rt, person["username"]) for person in demo_data()["engineers"]
    )


def test_loading_the_demo_again_grants_nothing_twice(rt: Any) -> None:
    grant_demo_roles(rt.settings)
    with session_scope(rt.engine) as session:
        first = [
            (g.role, g.subject_kind, g.subject, g.granted_by) for g in list_grants(session=session)
        ]
    grant_demo_roles(rt.settings)
    with session_scope(rt.engine) as session:
        again = [
            (g.role, g.subject_kind, g.subject, g.granted_by) for g in list_grants(session=session)
        ]
    assert again == first
    assert first and {grantor for *_, grantor in first} == {DEMO_GRANTOR}
    assert ("agent", "group", "servicedesk", DEMO_GRANTOR) in first
