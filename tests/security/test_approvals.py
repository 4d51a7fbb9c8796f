"""Approvals under segregation of duties, the code cap of a link, and the windows a change
without a planned start must wait for (issue 12, items 4 and 6).

Each attack is refused, recorded on the change's timeline, and changes nothing else: a requester
approving their own change through the proper link and code, one person voting in two stages,
an override by someone who is not a change manager, a change left without a planned start in a
freeze, and a link asked for code after code.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, col, select

from itilflow import clock
from itilflow.flows.notify import redeliver_notifications
from itilflow.gateway.app import create_app
from itilflow.models import (
    ApprovalCode,
    ApprovalRequest,
    Change,
    ChangeEntry,
    ChangeStatus,
    FlowTrigger,
    session_scope,
)
from itilflow.policies import ApprovalStage, default_policy_dir, load_policies
from itilflow.policies.change import ApprovalPath
from itilflow.services import changes
from itilflow.services.principals import create_token, grant_role
from itilflow.tasks.change.check_window import check_window
from itilflow.tasks.change.plan_approval_reminders import plan_approval_reminders
from itilflow.tasks.change.record_approval_input import record_approval_input
from itilflow.tasks.change.request_approvals import approval_step
from tests.changes.conftest import change_engine, live_gateway, wait_for  # noqa: F401
from tests.support.approval_codes import codes_sent_to, decide_by_link, wait_for_code
from tests.support.change_policy import use_change_policy
from tests.support.csrf import post_form

PLAN = {
    "steps": [{"name": "noop", "do": {"kind": "shell", "command": "true"}, "irreversible": True}]
}


SHIPPED = load_policies(default_policy_dir()).change


class RecordingEngine:
    """The change engine as the gateway sees it, recording what it was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def start(self, change_id: int) -> str | None:
        self.calls.append(("start", change_id))
        return None

    async def cancel(self, flow_run_id: str) -> None:
        self.calls.append(("cancel", flow_run_id))

    async def resume(self, flow_run_id: str, run_input: dict[str, Any]) -> bool:
        self.calls.append(("resume", flow_run_id))
        return True


def two_stages_sharing_chen(cab_quorum: Any = 2) -> dict[str, Any]:
    """Normal changes: chen, sun or zhao as technical lead; a risky one also needs the CAB,
    where chen sits too."""
    path = ApprovalPath(
        stages=[ApprovalStage(name="technical-lead", approvers=["chen", "sun", "zhao"])],
        high_risk_stages=[
            ApprovalStage(name="cab", approvers=["chen", "wang", "lin"], quorum=cab_quorum)
        ],
    )
    return {"approvals": {**SHIPPED.approvals, "normal": path}}


def new_change(
    rt: Any,
    *,
    requester: str = "api",
    risk_level: str = "low",
    status: ChangeStatus = ChangeStatus.awaiting_approval,
    planned_start: datetime | None = None,
) -> int:
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session,
            new=changes.NewChange(
                title="Rotate the TLS certificate",
                plan=PLAN,
                requester=requester,
                planned_start=planned_start,
            ),
            actor=requester,
        )
        change.status, change.risk_level = status, risk_level
        session.flush()
        assert change.id is not None
        return change.id


def link_for(rt: Any, change_id: int, approver: str, stage: str) -> str:
    """A live approval link for `approver` in `stage`, as a mail would carry it."""
    with session_scope(rt.engine) as session:
        change = changes.load_change(session, change_id)
        request = changes.create_approval_request(
            session=session, change=change, stage=stage, approver=approver, policies=rt.policies
        )
        return changes.approval_token(request, secret=rt.secret, policies=rt.policies)


def timeline(rt: Any, change_id: int) -> list[ChangeEntry]:
    with Session(rt.engine) as session:
        return list(
            session.exec(
                select(ChangeEntry)
                .where(ChangeEntry.change_id == change_id)
                .order_by(col(ChangeEntry.id))
            )
        )


def kinds(rt: Any, change_id: int) -> list[str]:
    return [entry.kind for entry in timeline(rt, change_id)]


def requests_of(rt: Any, change_id: int) -> list[tuple[str, str, str | None]]:
    with Session(rt.engine) as session:
        rows = session.exec(
            select(ApprovalRequest)
            .where(ApprovalRequest.change_id == change_id)
            .order_by(col(ApprovalRequest.id))
        )
        return [(r.stage, r.approver, r.decision) for r in rows]


def person_token(rt: Any, name: str, *, role: str | None = None) -> str:
    with session_scope(rt.engine) as session:
        if role:
            grant_role(
                session=session, role=role, subject_kind="person", subject=name, granted_by="test"
            )
        token, _ = create_token(session=session, principal=name, kind="person", created_by="test")
        return token


def ask_for_code(http: Any, smtp_server: Any, token: str) -> str:
    """Press approve on the link's page and read the code from chen's mail."""
    before = len(codes_sent_to(smtp_server, "chen@example.com"))
    pressed = post_form(http, f"/approvals/{token}", {"decision": "approve"})
    assert pressed.status_code == 200, pressed.text
    return wait_for_code(smtp_server, "chen@example.com", nth=before + 1)


def approve_as(rt: Any, smtp_server: Any, address: str) -> None:
    """What the approver at `address` does with their approval mail: open the link, press
    approve, enter the code mailed to them."""
    mail = wait_for(
        f"the approval mail to {address}",
        lambda: next((m for m in smtp_server.mails if address in m.rcpt_tos), None),
    )
    link = mail.message.get_body(("plain",)).get_content().split("/approvals/")[1].split()[0]
    url = f"{rt.settings.public_url}/approvals/{link}"
    assert "recorded" in decide_by_link(smtp_server, url, address, "approve").text


def wait_until_successful(gateway: Any, change_id: int) -> None:
    wait_for(
        "the change to finish",
        lambda: gateway.get(f"/api/changes/{change_id}").json()["status"] == "successful",
    )


# --- A requester never approves their own change ------------------------------------------


def test_a_requester_approving_their_own_change_by_link_and_code_is_refused(
    client, rt, smtp_server
):
    change_id = new_change(rt, requester="chen")
    # A link for chen as a stage's approver (mailed before segregation was switched on).
    token = link_for(rt, change_id, "chen", "technical-lead")
    with session_scope(rt.engine) as session:
        request = session.exec(select(ApprovalRequest)).one()
        # ... and a code chen already holds for it.
        _, code = changes.issue_approval_code(
            session=session,
            request=request,
            decision="approve",
            secret=rt.secret,
            policy=rt.policies.change.approval_links,
        )
    before = kinds(rt, change_id)

    pressed = post_form(client, f"/approvals/{token}", {"decision": "approve"})
    assert pressed.status_code == 409
    assert "requested CHG-" in pressed.text and "own change" in pressed.text
    assert codes_sent_to(smtp_server, "chen@example.com") == []  # no code mailed for it

    entered = post_form(client, f"/approvals/{token}", {"decision": "approve", "code": code})
    assert entered.status_code == 409 and "segregation of duties" in entered.text

    assert requests_of(rt, change_id) == [("technical-lead", "chen", None)]
    with Session(rt.engine) as session:
        assert session.get(Change, change_id).status == ChangeStatus.awaiting_approval
        held = session.exec(select(ApprovalCode)).one()
        assert held.used_at is None and held.attempts == 0  # the code was not even tried
    refusals = timeline(rt, change_id)[len(before) :]
    assert [e.kind for e in refusals] == ["decision_refused", "decision_refused"]
    assert all("chen" in e.message and "via link" in e.message for e in refusals)


@pytest.fixture
def without_freezes(rt):
    """No change freezes (requested before the gateway is built): a change planned to start
    now would be refused in the shipped Spring Festival freeze, or scored high risk and sent to
    the CAB in the year-end one, and a test of segregation would fail on the calendar's say."""
    use_change_policy(rt, freeze_windows=[])


def test_the_requester_is_not_asked_and_the_stage_falls_to_the_others(
    without_freezes,
    live_gateway,  # noqa: F811
    rt,
    smtp_server,
    change_engine,  # noqa: F811
    prefect_server,
):
    change_id = new_change(
        rt, requester="chen", status=ChangeStatus.submitted, planned_start=clock.now()
    )
    asyncio.run(change_engine.start(change_id))
    wait_for("the approval mails", lambda: len(smtp_server.mails) >= 2)
    assert {approver for _, approver, _ in requests_of(rt, change_id)} == {"sun", "zhao"}
    skipped = [e for e in timeline(rt, change_id) if e.kind == "segregation_skipped"]
    assert len(skipped) == 1 and "chen requested the change" in skipped[0].message
    assert not [m for m in smtp_server.mails if "chen@example.com" in m.rcpt_tos]

    approve_as(rt, smtp_server, "sun@example.com")
    wait_until_successful(live_gateway, change_id)


# --- A person counts once across a change's stages -----------------------------------------


def test_a_person_who_decided_one_stage_is_not_asked_or_counted_in_the_next(
    client, rt, smtp_server
):
    use_change_policy(rt, **two_stages_sharing_chen())
    change_id = new_change(rt, risk_level="high")
    stage_one = link_for(rt, change_id, "chen", "technical-lead")
    code = ask_for_code(client, smtp_server, stage_one)
    decided = post_form(client, f"/approvals/{stage_one}", {"decision": "approve", "code": code})
    assert decided.status_code == 200 and "recorded" in decided.text

    with Session(rt.engine) as session:
        change = changes.load_change(session, change_id)
        state = changes.approval_state(session, change, 1, rt.policies)
    assert state.stage is not None and state.stage.name == "cab"
    assert state.eligible == ["wang", "lin"] and not state.blocked
    assert state.excluded == {"chen": "decided in stage technical-lead"}

    # The CAB's requests go to wang and lin only.
    step = approval_step.fn(change_id, 1)
    assert step.outcome == "pending" and step.stage == "cab"
    assert sorted(plan["emails"][0] for plan in step.mails) == [
        "lin@example.com",
        "wang@example.com",
    ]

    # A CAB link for chen (however it came about) decides nothing, by link or by the form.
    cab_link = link_for(rt, change_id, "chen", "cab")
    before = len(timeline(rt, change_id))
    pressed = post_form(client, f"/approvals/{cab_link}", {"decision": "approve"})
    assert pressed.status_code == 409 and "counts once" in pressed.text
    # The decide-change form needs a code mailed for the request: say chen got one anyway.
    with session_scope(rt.engine) as session:
        request = session.exec(
            select(ApprovalRequest).where(
                ApprovalRequest.change_id == change_id,
                ApprovalRequest.stage == "cab",
                ApprovalRequest.approver == "chen",
            )
        ).one()
        _, code = changes.issue_approval_code(
            session=session,
            request=request,
            decision="approve",
            secret=rt.secret,
            policy=rt.policies.change.approval_links,
        )
    said = record_approval_input.fn(str(change_id), "approve", code, "")
    assert said.outcome == "refused" and "counts once" in said.message

    assert ("cab", "chen", None) in requests_of(rt, change_id)
    refusals = timeline(rt, change_id)[before:]
    assert [e.kind for e in refusals] == ["decision_refused", "decision_refused"]
    assert "via link" in refusals[0].message and "via prefect-ui" in refusals[1].message
    with Session(rt.engine) as session:
        state = changes.approval_state(session, session.get(Change, change_id), 1, rt.policies)
    assert state.outcome == "pending"  # chen's first approval counted once, in its own stage


# --- A blocked stage waits for a change manager's override ---------------------------------


def test_an_override_needs_a_change_manager_and_a_reason(rt, smtp_server):
    use_change_policy(rt, **two_stages_sharing_chen(cab_quorum="all"))
    engine = RecordingEngine()
    from fastapi.testclient import TestClient

    change_id = new_change(rt, risk_level="high")
    link_for(rt, change_id, "chen", "technical-lead")
    with session_scope(rt.engine) as session:
        changes.load_change(session, change_id).flow_run_id = "run-waiting"
        request = session.exec(select(ApprovalRequest)).one()
        changes.decide(session=session, request=request, decision="approve", comment="", via="link")
    with Session(rt.engine) as session:
        state = changes.approval_state(session, session.get(Change, change_id), 1, rt.policies)
    assert state.blocked and state.stage.name == "cab"  # "all" of the CAB, chen excluded
    approval_step.fn(change_id, 1)
    blocked = [e for e in timeline(rt, change_id) if e.kind == "segregation_blocked"]
    assert len(blocked) == 1 and "waits for a change manager's override" in blocked[0].message

    sun = person_token(rt, "sun", role="approver")  # not a change manager
    zhou = person_token(rt, "zhou", role="change_manager")
    chen = person_token(rt, "chen", role="change_manager")  # a change manager, but in conflict
    with TestClient(create_app(rt.settings, rt.policies, change_engine=engine)) as http:
        url = f"/api/changes/{change_id}/segregation-override"

        def override(token: str, reason: str) -> Any:
            return http.post(
                url, json={"reason": reason}, headers={"Authorization": f"Bearer {token}"}
            )

        refused = override(sun, "please")
        assert refused.status_code == 403 and "not a change manager" in refused.text
        in_conflict = override(chen, "I know the CAB is away")
        assert in_conflict.status_code == 403 and "another change manager" in in_conflict.text
        assert override(zhou, "   ").status_code == 422
        assert http.post(url, json={"reason": "x"}).status_code == 401
        assert engine.calls == []
        refusals = [e for e in timeline(rt, change_id) if e.kind == "segregation_override_refused"]
        assert [e.actor for e in refusals] == ["sun", "chen"]
        assert "segregation_override" not in kinds(rt, change_id)

        granted = override(zhou, "CAB short-handed during the audit; chen reviewed the plan")
        assert granted.status_code == 200, granted.text
        assert engine.calls == [("cancel", "run-waiting"), ("start", change_id)]
        again = override(zhou, "twice")
        assert again.status_code == 409 and "not waiting" in again.text

    entry = next(e for e in timeline(rt, change_id) if e.kind == "segregation_override")
    assert entry.actor == "zhou" and "chen reviewed the plan" in entry.message
    assert entry.data["people"] == ["chen"] and entry.data["stage"] == "cab"
    # chen is asked in the CAB now, and his CAB decision counts there.
    step = approval_step.fn(change_id, 1)
    assert "chen@example.com" in [plan["emails"][0] for plan in step.mails]


# --- The code cap of a link -------------------------------------------------------------------


def test_the_code_cap_locks_the_link_and_tells_the_approver_and_change_managers(
    rt, smtp_server, prefect_server
):
    from fastapi.testclient import TestClient

    links = rt.policies.change.approval_links.model_copy(update={"max_codes_per_link": 3})
    use_change_policy(rt, approval_links=links)
    person_token(rt, "wang", role="change_manager")
    change_id = new_change(rt)
    token = link_for(rt, change_id, "chen", "technical-lead")
    with TestClient(create_app(rt.settings, rt.policies, change_engine=RecordingEngine())) as http:
        url = f"/approvals/{token}"
        codes = []
        for nth in range(1, 4):
            assert post_form(http, url, {"decision": "approve"}).status_code == 200
            codes.append(wait_for_code(smtp_server, "chen@example.com", nth=nth))
            clock.advance(links.code_resend_after + timedelta(seconds=1))

        locked = post_form(http, url, {"decision": "approve"})
        assert locked.status_code == 409 and "locked" in locked.text
        assert "contact wang" in locked.text
        assert len(codes_sent_to(smtp_server, "chen@example.com")) == 3  # no fourth code

        # Locked: no codes, no decisions, and the page says whom to contact.
        clock.advance(links.code_resend_after + timedelta(seconds=1))
        assert post_form(http, url, {"decision": "approve"}).status_code == 409
        entered = post_form(http, url, {"decision": "approve", "code": codes[-1]})
        assert entered.status_code == 409 and "locked" in entered.text
        shown = http.get(url)
        assert shown.status_code == 409 and "This link is locked" in shown.text
        assert "contact wang" in shown.text
    assert requests_of(rt, change_id) == [("technical-lead", "chen", None)]
    assert len(codes_sent_to(smtp_server, "chen@example.com")) == 3
    assert kinds(rt, change_id).count("approval_link_locked") == 1

    # The notices were written with the lock, for the delivery pipeline, once.
    with Session(rt.engine) as session:
        kept = session.exec(
            select(FlowTrigger).where(
                FlowTrigger.change_id == change_id, FlowTrigger.kind == "notify"
            )
        ).all()
    assert len(kept) == 2
    assert asyncio.run(redeliver_notifications([t.id for t in kept])) == 2
    told = {
        rcpt
        for mail in smtp_server.mails
        if "Approval link locked" in mail.message["Subject"]
        for rcpt in mail.rcpt_tos
    }
    assert told == {"chen@example.com", "wang@example.com"}
    notified = [e for e in timeline(rt, change_id) if e.kind == "notified"]
    assert len(notified) == 2
    # Nor is chen reminded to use a link that can no longer decide.
    clock.advance(rt.policies.change.timing.remind_every)
    assert plan_approval_reminders.fn() == []


def test_without_change_managers_the_escalation_contact_is_told(rt):
    with Session(rt.engine) as session:
        from itilflow.services.changes.approval_codes import lock_contacts

        assert lock_contacts(session, rt.policies) == ["zhou"]  # change.yaml escalate_to


# --- A change without a planned start obeys the freeze --------------------------------------


def test_a_change_without_a_planned_start_in_a_freeze_waits_until_after_it(rt):
    clock.freeze(datetime(2027, 2, 8, 2, 0, tzinfo=UTC))  # Spring Festival freeze, 10:00 CST
    unplanned = new_change(rt, status=ChangeStatus.submitted)
    planned = new_change(rt, status=ChangeStatus.submitted, planned_start=clock.now())
    with session_scope(rt.engine) as session:
        risk = changes.assess(session, changes.load_change(session, unplanned), rt.policies)
        refused = changes.assess(session, changes.load_change(session, planned), rt.policies)
    assert refused.refused and "Spring Festival" in refused.refused
    assert risk.refused is None  # not refused: it waits

    with session_scope(rt.engine) as session:
        changes.load_change(session, unplanned).status = ChangeStatus.approved
    window = check_window.fn(unplanned, 1)
    # The first maintenance window after the freeze: Monday 2027-02-15 22:00 CST.
    assert window.when == "later"
    assert datetime.fromisoformat(window.at) == datetime(2027, 2, 15, 14, 0, tzinfo=UTC)
    chosen = [e for e in timeline(rt, unplanned) if e.kind == "window_chosen"]
    assert len(chosen) == 1 and "2027-02-15 22:00 CST" in chosen[0].message


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 12, 5, 4, 0, tzinfo=UTC), None),  # Saturday 12:00 CST: weekend window
        (datetime(2026, 12, 8, 15, 0, tzinfo=UTC), None),  # Tuesday 23:00 CST: night window
        # Thursday 12:00 CST: that night's window, 22:00 CST.
        (datetime(2026, 12, 3, 4, 0, tzinfo=UTC), datetime(2026, 12, 3, 14, 0, tzinfo=UTC)),
    ],
)
def test_an_unplanned_change_runs_in_the_window_it_is_in_or_waits_for_the_next(rt, now, expected):
    clock.freeze(now)
    change_id = new_change(rt, status=ChangeStatus.approved)
    window = check_window.fn(change_id, 1)
    if expected is None:
        assert window.when == "now"
    else:
        assert window.when == "later" and datetime.fromisoformat(window.at) == expected


@pytest.fixture
def only_chen_leads(rt):
    """Normal changes need chen, and only chen (requested before the gateway is built); no
    change freezes, as in `without_freezes`."""
    only_chen = ApprovalPath(stages=[ApprovalStage(name="technical-lead", approvers=["chen"])])
    use_change_policy(rt, approvals={**SHIPPED.approvals, "normal": only_chen}, freeze_windows=[])


def test_a_stage_only_the_requester_could_approve_waits_for_an_override_then_asks_them(
    only_chen_leads,
    live_gateway,  # noqa: F811
    rt,
    smtp_server,
    change_engine,  # noqa: F811
    prefect_server,
):
    zhou = person_token(rt, "zhou", role="change_manager")
    change_id = new_change(
        rt, requester="chen", status=ChangeStatus.submitted, planned_start=clock.now()
    )
    asyncio.run(change_engine.start(change_id))
    wait_for("the stage to block", lambda: "segregation_blocked" in kinds(rt, change_id))
    assert requests_of(rt, change_id) == [] and smtp_server.mails == []
    first_run = wait_for(
        "the run", lambda: live_gateway.get(f"/api/changes/{change_id}").json()["flow_run_id"]
    )

    overridden = live_gateway.post(
        f"/api/changes/{change_id}/segregation-override",
        json={"reason": "chen is the only engineer who knows this system"},
        headers={"Authorization": f"Bearer {zhou}"},
    )
    assert overridden.status_code == 200, overridden.text
    approve_as(rt, smtp_server, "chen@example.com")
    wait_until_successful(live_gateway, change_id)
    entries = timeline(rt, change_id)
    override = next(e for e in entries if e.kind == "segregation_override")
    assert override.actor == "zhou" and "only engineer" in override.message
    runs = {e.data["flow_run_id"] for e in entries if e.kind == "process_started"}
    # The first run ended at the blocked stage; the override's run asked chen; chen's decision
    # started the run that implemented the change.
    assert first_run in runs and len(runs) == 3
