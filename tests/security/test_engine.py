"""The engine is never an open door (issue 12): the Prefect server `itilflow up` starts asks
every API call for the credentials it generated, and a change waiting for approval takes a
decision from the Prefect UI's `decide-change` form only with the approver's emailed one-time
code. Each attack is refused, recorded where it should be, and changes nothing.

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


# -- a waiting change: no code, no decision -----------------------------------------------------


class ChangeRuns:
    """Changes whose first run this test starts in this process and waits out: the run ends
    once the approval mails are out, and nothing runs while the change waits."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.engine = InProcessChangeEngine()

    def start(self, title: str) -> tuple[int, str]:
        """A normal change on a critical CI (high risk here), its first run done; returns its
        id and number once it waits for the technical lead."""
        from itilflow.services import changes

        with session_scope(self.rt.engine) as session:
            change = changes.submit_change(
                session=session,
                new=changes.NewChange(title=title, plan=PLAN, ci_names=["shop-payment"]),
                actor="test",
            )
            change_id, number = change.id, change.number
        assert change_id is not None
        asyncio.run(self.engine.start(change_id))
        self.engine.threads[-1].join(timeout=60)
        assert self.engine.results[change_id] == "awaiting approval"
        return change_id, number

    def join(self) -> None:
        for thread in self.engine.threads:
            thread.join(timeout=30)


@pytest.fixture
def change_runs(rt: Any, authed: None) -> Iterator[ChangeRuns]:
    runs = ChangeRuns(rt)
    yield runs
    runs.join()


@pytest.fixture(scope="module")
def decide_deployment(engine_stack: Stack, authed: None) -> str:
    """The `decide-change` deployment as prefect.yaml declares it (its parameter schema
    enforced), on the stack's server; no worker serves it here."""
    from itilflow.flows.change import decide_change

    deployment = decide_change.to_deployment("decide-change", enforce_parameter_schema=True)
    return str(deployment.apply())


def change_row(rt: Any, change_id: int) -> Any:
    from itilflow.models import Change

    with Session(rt.engine) as session:
        return session.get(Change, change_id)


def run_state(run_id: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        return prefect.read_flow_run(uuid.UUID(run_id)).state


def create_run(stack: Stack, deployment_id: str, parameters: dict[str, Any]) -> int:
    """POST /deployments/{id}/create_flow_run as the UI's form does, with the credentials;
    the answer's status code."""
    with httpx.Client(base_url=stack.api_url, auth=basic_auth(stack), trust_env=False) as api:
        path = f"/deployments/{deployment_id}/create_flow_run"
        return post_until_not_busy(api, path, {"parameters": parameters}).status_code


def decide(number: str, decision: str, code: str, comment: str = "") -> str:
    """A decide-change run as the worker runs it (here, in this process)."""
    from itilflow.flows.change import decide_change

    return asyncio.run(decide_change(change=number, decision=decision, code=code, comment=comment))


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


def test_four_anonymous_decisions_of_a_high_risk_change_approve_nothing(
    rt, engine_stack, change_runs, decide_deployment
):
    change_id, number = change_runs.start("Move the payment database")
    assert change_row(rt, change_id).risk_level == "high"
    # Nothing runs while the change waits: its run completed once the mails were out.
    assert run_state(change_row(rt, change_id).flow_run_id).type.value == "COMPLETED"
    before = [(r.id, r.decision, r.decided_at) for r in requests_of(rt, change_id)]

    # What the attacker sent, and what they could send next: the form refuses the
    # first two (no run is made), the runs of the other two decide nothing.
    assert create_run(engine_stack, decide_deployment, {}) == 409
    claimed = {"change": number, "approver": "chen", "decision": "approve"}
    assert create_run(engine_stack, decide_deployment, claimed) == 409
    assert decide(number, "approve", "123456").startswith("refused")
    assert decide(number, "approve", "eyJydW4iOiJ4In0.forged", "cab ok").startswith("refused")
    refused = refused_after(rt, change_id, 2)

    assert [(r.id, r.decision, r.decided_at) for r in requests_of(rt, change_id)] == before
    assert {r.stage for r in requests_of(rt, change_id)} == {"technical-lead"}
    assert change_row(rt, change_id).status.value == "awaiting_approval"
    assert not entries(rt, change_id, "approved")
    assert {e.actor for e in refused} == {"prefect-api (unauthenticated)"}
    assert all("decided nothing" in e.message for e in refused)
    assert all("123456" not in e.message for e in refused)  # a guess is not kept


def test_a_code_for_another_request_or_decision_is_refused(rt, client, smtp_server, change_runs):
    change_a, number_a = change_runs.start("Rotate the payment keys")
    change_b, number_b = change_runs.start("Patch the payment hosts")
    code_a = mailed_code(client, smtp_server, rt, change_a, "chen")
    code_b = mailed_code(client, smtp_server, rt, change_b, "sun")

    # Chen's code for change A given for change B: a wrong code there, counted against B's.
    assert decide(number_b, "approve", code_a).startswith("refused")
    assert "code is wrong" in refused_after(rt, change_b, 1)[0].message
    assert live_code_of(rt, change_b, "sun").attempts == 1
    # Chen's code to approve A, sent to reject A: no code to reject is waiting.
    assert decide(number_a, "reject", code_a).startswith("refused")
    assert "no code to reject" in refused_after(rt, change_a, 1)[0].message

    for change_id in (change_a, change_b):
        assert all(r.decision is None for r in requests_of(rt, change_id))
        assert change_row(rt, change_id).status.value == "awaiting_approval"
    # The codes themselves still work where they belong.
    assert decide(number_b, "approve", code_b) == "awaiting approval"  # the CAB is asked
    assert [e.actor for e in entries(rt, change_b, "approved")] == ["sun"]


def test_a_valid_code_approves_once(rt, client, smtp_server, change_runs):
    change_id, number = change_runs.start("Upgrade the payment service")
    code = mailed_code(client, smtp_server, rt, change_id, "chen")
    # The form's run takes the decision and carries the change on: it asks the CAB, and ends.
    assert decide(number, "approve", code) == "awaiting approval"
    approved = entries(rt, change_id, "approved")
    assert [(e.actor, e.message) for e in approved] == [
        ("chen", "technical-lead: approved by chen via prefect-ui")
    ]
    assert {r.stage for r in requests_of(rt, change_id)} == {"technical-lead", "cab"}
    # The same code a second time decides nothing.
    assert decide(number, "approve", code).startswith("refused")
    refused_after(rt, change_id, 1)
    decided = [(r.approver, r.decision) for r in requests_of(rt, change_id) if r.decision]
    assert decided == [("chen", "approve")]

    # A CAB member decides on the link's page: the gateway stores it and starts the change's
    # next run (none here: no worker), which would find that the CAB needs two.
    zhou = link_token(rt, change_id, "zhou")
    zhou_code = mailed_code(client, smtp_server, rt, change_id, "zhou")
    page = post_form(client, f"/approvals/{zhou}", {"decision": "approve", "code": zhou_code})
    assert page.status_code == 200 and "is recorded" in page.text, page.text
    assert len(entries(rt, change_id, "approved")) == 2
    assert len(entries(rt, change_id, "approval_refused")) == 1
    assert change_row(rt, change_id).status.value == "awaiting_approval"
