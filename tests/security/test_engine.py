"""The engine is never an open door (issue 12): the Prefect server `itilflow up` starts asks
every API call for the credentials it generated, and a paused change takes a decision only with
the approver's emailed one-time code (or the gateway's signed receipt of one). Each attack is
refused, recorded where it should be, and changes nothing.

The server here is started as `up` starts it (Stack.start_prefect_server: the generated
credentials, loopback); the change runs in this process against it, with the credentials."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlmodel import Session, select

from itilflow.models import ApprovalCode, ApprovalRequest, ChangeEntry, session_scope
from itilflow.settings import PREFECT_AUTH_FILE, Settings
from itilflow.stack import Stack
from tests.changes.conftest import InProcessChangeEngine, wait_for
from tests.conftest import ALL_TAGS, make_settings, write_apprise_config
from tests.support.approval_codes import codes_sent_to, wait_for_code
from tests.support.csrf import post_form
from tests.support.smtp import free_port

pytestmark = pytest.mark.timeout(600)

POLICIES = Path(__file__).resolve().parents[2] / "policies" / "defaults"
PLAN = {
    "steps": [
        {
            "name": "write a marker",
            "do": {"kind": "shell", "command": "true"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}
# What the attacker sent: a standard change whose step writes a file as the worker.
ATTACK_PARAMETERS = {
    "title": "nothing to see",
    "category": "standard",
    "plan": {"steps": [{"name": "own", "do": {"kind": "shell", "command": "id > /tmp/owned"}}]},
}


@pytest.fixture(scope="module")
def engine_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server started as `itilflow up` starts it, on a port of its own."""
    data = tmp_path_factory.mktemp("engine") / "data"
    stack = Stack(make_settings(data, prefect_port=free_port()))
    stack.start_prefect_server()
    try:
        yield stack
    finally:
        stack.stop()


def basic_auth(stack: Stack) -> httpx.BasicAuth:
    user, password = stack.settings.prefect_basic_auth or ("", "")
    return httpx.BasicAuth(user, password)


@pytest.fixture(scope="module")
def authed(engine_stack: Stack) -> Iterator[None]:
    """This process's Prefect client (and its threads': the gateway's, the change runs') on the
    stack's server, with its credentials, as `up` gives them to its children."""
    import prefect.context
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    auth = engine_stack.settings.prefect_auth_string
    assert auth is not None
    updates = {PREFECT_API_URL: engine_stack.api_url, PREFECT_API_AUTH_STRING: auth}
    with temporary_settings(updates=updates):  # type: ignore[arg-type]
        with prefect.context._temporary_global_settings_context(
            prefect.context.get_settings_context()
        ):
            yield
            # The runs' logs reach this server before it stops (not a connection error later).
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=10)


@pytest.fixture
def settings(tmp_path: Path, database_url: str, smtp_server: Any, http_sink: Any) -> Settings:
    """A policy under which every normal change on a critical CI is high risk: two stages,
    the technical lead (any of chen, sun, zhao), then the CAB (two of zhou, wang, lin)."""
    policies = tmp_path / "policies"
    policies.mkdir()
    for source in POLICIES.glob("*.yaml"):
        (policies / source.name).write_text(source.read_text())
    change = yaml.safe_load((policies / "change.yaml").read_text())
    change["risk"]["levels"] = {"low": 0, "medium": 1, "high": 2}
    (policies / "change.yaml").write_text(yaml.safe_dump(change))
    return make_settings(
        tmp_path,
        smtp_port=smtp_server.port,
        apprise_config=write_apprise_config(tmp_path / "apprise.yaml", http_sink, ALL_TAGS),
        policy_dir=policies,
    )


# -- the server: no credentials, no entry ------------------------------------------------------


def test_up_makes_the_credentials_once_and_gives_them_to_every_child(tmp_path, monkeypatch):
    monkeypatch.setenv("ITILFLOW_PREFECT_AUTH_STRING", "")  # blank: unset, never no password
    data = tmp_path / "data"
    settings = make_settings(data)
    assert settings.prefect_auth_string is None
    stack = Stack(settings)
    settings.require_prefect_auth()
    stored = (data / PREFECT_AUTH_FILE).read_text().strip()
    assert (data / PREFECT_AUTH_FILE).stat().st_mode & 0o777 == 0o600
    user, _, password = stored.partition(":")
    assert user == "itilflow" and len(password) >= 43
    env = stack.env()  # what every child gets: server, runner, gateway, workers, their runs
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == stored
    # The next start, and every local client (doctor, the children's own settings), reuse it.
    again = make_settings(data)
    assert again.prefect_auth_string is not None
    assert again.prefect_auth_string.get_secret_value() == stored
    again.require_prefect_auth()
    assert (data / PREFECT_AUTH_FILE).read_text().strip() == stored
    # Given credentials win; an existing server keeps its own (nothing generated for it).
    given = make_settings(tmp_path / "given", prefect_auth_string="admin:" + "x" * 43)
    given.require_prefect_auth()
    assert not (tmp_path / "given" / PREFECT_AUTH_FILE).exists()
    other = make_settings(tmp_path / "other", prefect_api_url="http://prefect.internal:4200/api")
    other.require_prefect_auth()
    assert other.prefect_auth_string is None
    assert "PREFECT_SERVER_API_AUTH_STRING" not in Stack(other).secrets_env()


def test_without_credentials_the_api_starts_and_resumes_nothing(engine_stack):
    api = engine_stack.api_url
    server = next(c for c in engine_stack.children if c.name == "prefect-server")
    assert server.process.args[-4:] == ["--host", "127.0.0.1", "--port", str(free_port_of(api))]
    # Health stays open: `up` waits on it, and the platform inspection checks it.
    assert httpx.get(f"{api}/health", trust_env=False).status_code == 200
    with httpx.Client(base_url=api, auth=basic_auth(engine_stack), trust_env=False) as admin:
        flow = post_until_not_busy(admin, "/flows/", {"name": "request-change"})
        assert flow.status_code in (200, 201), flow.text
        deployment = post_until_not_busy(
            admin, "/deployments/", {"name": "request-change", "flow_id": flow.json()["id"]}
        )
        assert deployment.status_code in (200, 201), deployment.text
        deployment_id = deployment.json()["id"]
        run_id = str(uuid.uuid4())
        attacks = {
            "create_flow_run": (
                "POST",
                f"/deployments/{deployment_id}/create_flow_run",
                {"parameters": ATTACK_PARAMETERS},
            ),
            "flow_run": ("POST", "/flow_runs/", {"flow_id": flow.json()["id"]}),
            "resume": (
                "POST",
                f"/flow_runs/{run_id}/resume",
                {"run_input": {"approver": "chen", "decision": "approve"}},
            ),
            "read": ("POST", "/flow_runs/filter", {}),
        }
        wrong = httpx.BasicAuth("itilflow", secrets.token_urlsafe(32))
        for name, (method, path, body) in attacks.items():
            for auth in (None, wrong):
                answer = httpx.request(
                    method, f"{api}{path}", json=body, auth=auth, trust_env=False
                )
                assert answer.status_code == 401, (name, auth, answer.text)
        # Nothing was made: the credentials show an empty list of runs.
        assert post_until_not_busy(admin, "/flow_runs/filter", {}).json() == []


def test_a_worker_or_client_without_the_credentials_cannot_connect(engine_stack):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings(
        updates={PREFECT_API_URL: engine_stack.api_url},
        restore_defaults={PREFECT_API_AUTH_STRING},
    ):
        with get_client(sync_client=True) as client:
            # What a worker does first: find its work pool.
            with pytest.raises(PrefectHTTPStatusError, match="401"):
                client.read_work_pools()


def post_until_not_busy(api: httpx.Client, path: str, body: Any) -> httpx.Response:
    """503 is Prefect's "try again": its SQLite database was busy (its client retries too)."""

    def post() -> httpx.Response | None:
        answer = api.post(path, json=body, timeout=30)
        return None if answer.status_code == 503 else answer

    return wait_for(f"POST {path}", post)


def free_port_of(api_url: str) -> int:
    return int(api_url.rsplit(":", 1)[1].split("/")[0])


# -- a paused change: no code, no decision ------------------------------------------------------


class ChangeRuns:
    """Changes whose runs this test starts in this process; each is rejected at the end (as a
    link would, with the gateway's receipt), so that no run stays paused on a server that is
    going away."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.engine = InProcessChangeEngine()
        self.runs: dict[int, str] = {}

    def start(self, title: str) -> tuple[int, str]:
        """A normal change on a critical CI (high risk here), its run started; returns its id
        and run id once the run is paused for the technical lead."""
        from itilflow.services import changes

        with session_scope(self.rt.engine) as session:
            change = changes.submit_change(
                session=session,
                new=changes.NewChange(title=title, plan=PLAN, ci_names=["shop-payment"]),
                actor="test",
            )
            change_id = change.id
        assert change_id is not None
        asyncio.run(self.engine.start(change_id))
        run_id = wait_for("the run id", lambda: change_row(self.rt, change_id).flow_run_id)
        self.runs[change_id] = run_id
        wait_for_state(run_id, "PAUSED")
        return change_id, run_id

    def reject_all(self) -> None:
        from itilflow.engine import PrefectChangeEngine
        from itilflow.services import changes

        for change_id, run_id in self.runs.items():
            pending = [r for r in requests_of(self.rt, change_id) if r.decision is None]
            if not pending:
                continue
            with session_scope(self.rt.engine) as session:
                for request in pending:  # every one: a stage may need more than one "no"
                    changes.decide(
                        session=session,
                        request=request,
                        decision="reject",
                        comment="end of test",
                        via="test",
                    )
            receipt = changes.resume_receipt(
                request=pending[-1], decision="reject", flow_run_id=run_id, secret=self.rt.secret
            )
            run_input = {"decision": "reject", "code": receipt}
            asyncio.run(PrefectChangeEngine().resume(run_id, run_input))
        for thread in self.engine.threads:
            thread.join(timeout=30)


@pytest.fixture
def change_runs(rt: Any, authed: None) -> Iterator[ChangeRuns]:
    runs = ChangeRuns(rt)
    yield runs
    runs.reject_all()


def change_row(rt: Any, change_id: int) -> Any:
    from itilflow.models import Change

    with Session(rt.engine) as session:
        return session.get(Change, change_id)


def run_state(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(uuid.UUID(run_id)).state


def wait_for_state(run_id: str, state_type: str) -> Any:
    return wait_for(
        f"the run to be {state_type}",
        lambda: (state := run_state(run_id)).type.value == state_type and state,
    )


def resume(stack: Stack, run_id: str, run_input: dict[str, Any]) -> str:
    """POST /flow_runs/{id}/resume as the UI's form does, with the credentials."""
    with httpx.Client(base_url=stack.api_url, auth=basic_auth(stack), trust_env=False) as api:
        answer = post_until_not_busy(api, f"/flow_runs/{run_id}/resume", {"run_input": run_input})
    assert answer.status_code in (200, 201), answer.text  # 201: the run's state was set
    return answer.json()["status"]


def entries(rt: Any, change_id: int, kind: str) -> list[ChangeEntry]:
    with Session(rt.engine) as session:
        return list(
            session.exec(
                select(ChangeEntry).where(
                    ChangeEntry.change_id == change_id, ChangeEntry.kind == kind
                )
            )
        )


def requests_of(rt: Any, change_id: int) -> list[ApprovalRequest]:
    with Session(rt.engine) as session:
        statement = select(ApprovalRequest).where(ApprovalRequest.change_id == change_id)
        return list(session.exec(statement.order_by(ApprovalRequest.id)))


def link_token(rt: Any, change_id: int, approver: str) -> str:
    from itilflow.services import changes

    request = next(
        r for r in requests_of(rt, change_id) if r.approver == approver and r.decision is None
    )
    return changes.approval_token(request, secret=rt.secret, policies=rt.policies)


def mailed_code(client: Any, smtp_server: Any, rt: Any, change_id: int, approver: str) -> str:
    """Have the link page mail `approver` a code to approve (as pressing its button does)."""
    address = f"{approver}@example.com"
    nth = len(codes_sent_to(smtp_server, address)) + 1
    pressed = post_form(
        client, f"/approvals/{link_token(rt, change_id, approver)}", {"decision": "approve"}
    )
    assert pressed.status_code == 200, pressed.text
    return wait_for_code(smtp_server, address, nth=nth)


def live_code_of(rt: Any, change_id: int, approver: str) -> ApprovalCode:
    request = next(r for r in requests_of(rt, change_id) if r.approver == approver)
    with Session(rt.engine) as session:
        statement = select(ApprovalCode).where(ApprovalCode.request_id == request.id)
        return list(session.exec(statement.order_by(ApprovalCode.id)))[-1]


def refused_after(rt: Any, change_id: int, count: int) -> list[ChangeEntry]:
    """The change's refusals, once there are `count` of them."""

    def found() -> list[ChangeEntry] | None:
        refused = entries(rt, change_id, "approval_refused")
        return refused if len(refused) >= count else None

    return wait_for(f"{count} refusal(s) on the timeline", found)


def test_four_anonymous_resumes_of_a_high_risk_change_approve_nothing(
    rt, engine_stack, change_runs
):
    change_id, run_id = change_runs.start("Move the payment database")
    assert change_row(rt, change_id).risk_level == "high"
    first_pause = run_state(run_id).state_details.pause_timeout
    before = [(r.id, r.decision, r.decided_at) for r in requests_of(rt, change_id)]

    # What the attacker sent, and what they could send next.
    assert resume(engine_stack, run_id, {}) == "REJECT"
    assert resume(engine_stack, run_id, {"approver": "chen", "decision": "approve"}) == "REJECT"
    assert resume(engine_stack, run_id, {"decision": "approve", "code": "123456"}) == "ACCEPT"
    refused_after(rt, change_id, 1)
    wait_for_state(run_id, "PAUSED")
    forged = {"decision": "approve", "code": "eyJydW4iOiJ4In0.forged", "comment": "cab ok"}
    assert resume(engine_stack, run_id, forged) == "ACCEPT"
    refused = refused_after(rt, change_id, 2)
    paused = wait_for_state(run_id, "PAUSED")

    assert [(r.id, r.decision, r.decided_at) for r in requests_of(rt, change_id)] == before
    assert {r.stage for r in requests_of(rt, change_id)} == {"technical-lead"}
    assert change_row(rt, change_id).status.value == "awaiting_approval"
    assert not entries(rt, change_id, "approved")
    assert {e.actor for e in refused} == {"prefect-api (unauthenticated)"}
    assert "decided nothing" in refused[0].message and "receipt" in refused[1].message
    assert all("123456" not in e.message for e in refused)  # a guess is not kept
    # The wait goes on to the first deadline: a refused resume does not start it again.
    assert abs((paused.state_details.pause_timeout - first_pause).total_seconds()) < 5


def test_a_code_for_another_request_or_decision_is_refused(
    rt, client, smtp_server, engine_stack, change_runs
):
    from itilflow.services import changes

    change_a, run_a = change_runs.start("Rotate the payment keys")
    change_b, run_b = change_runs.start("Patch the payment hosts")
    code_a = mailed_code(client, smtp_server, rt, change_a, "chen")
    code_b = mailed_code(client, smtp_server, rt, change_b, "sun")

    # Chen's code for change A on change B's run: a wrong code there, counted against B's.
    assert resume(engine_stack, run_b, {"decision": "approve", "code": code_a}) == "ACCEPT"
    assert "code is wrong" in refused_after(rt, change_b, 1)[0].message
    assert live_code_of(rt, change_b, "sun").attempts == 1
    # Chen's code to approve A, sent to reject A: no code to reject is waiting.
    wait_for_state(run_a, "PAUSED")
    assert resume(engine_stack, run_a, {"decision": "reject", "code": code_a}) == "ACCEPT"
    assert "no code to reject" in refused_after(rt, change_a, 1)[0].message
    # The gateway's receipt for A's run, replayed on B's: bound to its run.
    request_a = next(r for r in requests_of(rt, change_a) if r.approver == "chen")
    receipt = changes.resume_receipt(
        request=request_a, decision="approve", flow_run_id=run_a, secret=rt.secret
    )
    wait_for_state(run_b, "PAUSED")
    assert resume(engine_stack, run_b, {"decision": "approve", "code": receipt}) == "ACCEPT"
    assert "another run" in refused_after(rt, change_b, 2)[1].message

    wait_for_state(run_a, "PAUSED")
    wait_for_state(run_b, "PAUSED")
    for change_id in (change_a, change_b):
        assert all(r.decision is None for r in requests_of(rt, change_id))
        assert change_row(rt, change_id).status.value == "awaiting_approval"
    # The codes themselves still work where they belong.
    assert resume(engine_stack, run_b, {"decision": "approve", "code": code_b}) == "ACCEPT"
    wait_for("sun's approval", lambda: entries(rt, change_b, "approved"))


def test_a_valid_code_approves_once(rt, client, smtp_server, engine_stack, change_runs):
    change_id, run_id = change_runs.start("Upgrade the payment service")
    code = mailed_code(client, smtp_server, rt, change_id, "chen")
    assert resume(engine_stack, run_id, {"decision": "approve", "code": code}) == "ACCEPT"
    approved = wait_for("chen's approval", lambda: entries(rt, change_id, "approved"))
    assert [(e.actor, e.message) for e in approved] == [
        ("chen", "technical-lead: approved by chen via prefect-ui")
    ]
    # On to the CAB, paused again; the same code a second time decides nothing.
    wait_for(
        "the CAB's requests",
        lambda: {r.stage for r in requests_of(rt, change_id)} == {"technical-lead", "cab"},
    )
    wait_for_state(run_id, "PAUSED")
    assert resume(engine_stack, run_id, {"decision": "approve", "code": code}) == "ACCEPT"
    refused_after(rt, change_id, 1)
    decided = [(r.approver, r.decision) for r in requests_of(rt, change_id) if r.decision]
    assert decided == [("chen", "approve")]

    # A CAB member decides on the link's page: the gateway resumes the run with its signed
    # receipt, which the run accepts (no refusal) and which takes nothing more.
    pause_key = wait_for_state(run_id, "PAUSED").state_details.pause_key
    zhou = link_token(rt, change_id, "zhou")
    zhou_code = mailed_code(client, smtp_server, rt, change_id, "zhou")
    page = post_form(client, f"/approvals/{zhou}", {"decision": "approve", "code": zhou_code})
    assert page.status_code == 200 and "is recorded" in page.text, page.text
    wait_for(  # the run took the receipt and paused again: the CAB needs two
        "the run to pause for the second CAB member",
        lambda: (
            (state := run_state(run_id)).type.value == "PAUSED"
            and state.state_details.pause_key != pause_key
        ),
    )
    assert len(entries(rt, change_id, "approved")) == 2
    assert len(entries(rt, change_id, "approval_refused")) == 1
    assert change_row(rt, change_id).status.value == "awaiting_approval"


def test_a_receipt_works_only_for_its_run_request_and_decision(rt):
    """The gateway's receipt, judged by the run (no engine needed): bound to the run, the
    request, its approver and the decision stored, and short-lived."""
    from datetime import timedelta

    from itilflow import clock
    from itilflow.models import Change
    from itilflow.services import changes
    from tests.support.approval_codes import make_waiting_change

    change, _ = make_waiting_change(rt, PLAN)
    chen, sun = requests_of(rt, change.id)
    with session_scope(rt.engine) as session:
        changes.decide(session=session, request=chen, decision="approve", comment="", via="link")

    def judge(receipt: str, *, run: str = "run-1", decision: str = "approve") -> str:
        with session_scope(rt.engine) as session:
            return changes.decide_from_engine(
                session=session,
                change=session.get(Change, change.id),
                version=change.version,
                decision=decision,
                code=receipt,
                comment="",
                flow_run_id=run,
                secret=rt.secret,
                policies=rt.policies,
            ).outcome

    def receipt_for(request: ApprovalRequest, decision: str = "approve") -> str:
        return changes.resume_receipt(
            request=request, decision=decision, flow_run_id="run-1", secret=rt.secret
        )

    assert judge(receipt_for(chen)) == "recorded"
    assert judge(receipt_for(chen), run="run-2") == "refused"  # another run
    assert judge(receipt_for(chen, "reject"), decision="reject") == "refused"  # not stored
    assert judge(receipt_for(sun)) == "refused"  # sun decided nothing
    forged = changes.resume_receipt(
        request=chen, decision="approve", flow_run_id="run-1", secret="not-the-key"
    )
    assert judge(forged) == "refused"
    late = receipt_for(chen)
    clock.advance(timedelta(minutes=11))
    assert judge(late) == "refused"
    refused = entries(rt, change.id, "approval_refused")
    assert len(refused) == 5 and {e.actor for e in refused} == {"prefect-api (unauthenticated)"}
    assert [(r.approver, r.decision) for r in requests_of(rt, change.id)] == [
        ("chen", "approve"),
        ("sun", None),
    ]
