"""Issue 12's attacks on a change's steps, each refused or contained, on the record, nothing else
changed: a `standard` change with a free plan, parameters that try to be shell code, `env` in a
step, an HTTP step to a host the policy does not allow, and secrets a step prints."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from itilflow.executors import ChangePlan, Containment, arun_action
from itilflow.models import Change, ConfigurationItem, get_change_timeline, session_scope
from itilflow.policies.steps import StepsPolicy
from itilflow.services import changes
from tests.support.http_sink import HttpSink
from tests.support.principals import as_person

pytestmark = pytest.mark.timeout(60)

ENV_PLAN: dict[str, Any] = {
    "steps": [
        {
            "name": "show the environment",
            "do": {"kind": "shell", "command": "env"},
            "undo": {"kind": "shell", "command": "true"},
        }
    ]
}
# A template whose parameter is free text: the value must still reach the command as one word.
ECHO_TEMPLATE: dict[str, Any] = {
    "description": "write a word to the log",
    "parameters": {
        "word": {"type": "str", "pattern": "[^\\n]{1,200}", "max_length": 200},
        "host": {"type": "ci"},
    },
    "cis": {"kinds": ["server"], "criticality": ["low"]},
    "requesters": {"people": ["chen"], "groups": ["dba"], "roles": ["change_manager"]},
    "plan": {
        "steps": [
            {
                "name": "say",
                "do": {"command": "printf '%s\\n' {{word}}; printf '%s\\n' {{host}}"},
                "undo": {"argv": ["printf", "%s|%s\\n", "{{word}}", "{{host}}"]},
            }
        ]
    },
}


def with_change_policy(rt, **update: Any) -> None:
    """Give the runtime (the gateway built after this, and the steps' task) another change
    policy."""
    policy = rt.policies.change.model_validate(
        {**rt.policies.change.model_dump(), **update}, context={"stack_urls": {}}
    )
    rt.policies = rt.policies.model_copy(update={"change": policy})


@pytest.fixture
def gateway(rt):
    from fastapi.testclient import TestClient

    from itilflow.gateway.app import create_app

    with session_scope(rt.engine) as session:
        session.add(ConfigurationItem(name="lab-box", kind="server", criticality="low"))
    with_change_policy(rt, templates={"echo": ECHO_TEMPLATE})
    with TestClient(create_app(rt.settings, rt.policies)) as client:
        assert rt.settings.api_token is not None
        client.headers["Authorization"] = f"Bearer {rt.settings.api_token.get_secret_value()}"
        yield client


def stored_changes(rt) -> list[Change]:
    with Session(rt.engine) as session:
        return list(session.exec(select(Change)).all())


def timeline(rt, change_id: int) -> list[Any]:
    with Session(rt.engine) as session:
        return list(get_change_timeline(session=session, change_id=change_id))


# ---------------------------------------------------------------------------------------------
# A standard change is a template, nothing else


def test_a_standard_change_with_a_free_plan_is_refused_and_nothing_is_stored(gateway, rt):
    answer = gateway.post(
        "/api/changes", json={"title": "show env", "category": "standard", "plan": ENV_PLAN}
    )
    assert answer.status_code == 422
    assert "names a template" in answer.json()["detail"]
    assert "normal change and needs approval" in answer.json()["detail"]
    assert stored_changes(rt) == []


def test_a_template_with_a_plan_of_its_own_is_refused(gateway, rt):
    answer = gateway.post(
        "/api/changes",
        json={
            "title": "echo",
            "template": "echo",
            "parameters": {"word": "hi", "host": "lab-box"},
            "plan": ENV_PLAN,
        },
    )
    assert answer.status_code == 422
    assert "built from its template: leave `plan` out" in answer.json()["detail"]
    assert stored_changes(rt) == []


def test_the_same_free_plan_is_a_normal_change_that_needs_approval(gateway, rt):
    answer = gateway.post("/api/changes", json={"title": "show env", "plan": ENV_PLAN})
    assert answer.status_code == 201, answer.text
    assert answer.json()["category"] == "normal"
    [change] = stored_changes(rt)
    assert [s.name for s in changes.stages_for(change, rt.policies)] == ["technical-lead"]


async def test_a_standard_change_from_the_prefect_form_with_a_free_plan_is_refused(
    rt, prefect_server
):
    from itilflow.flows.change import request_change

    with pytest.raises(changes.StandardChangeRefused, match="names a template"):
        await request_change(
            title="show env", plan=ChangePlan.model_validate(ENV_PLAN), category="standard"
        )
    assert stored_changes(rt) == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"template": "nope"}, 422, "no standard-change template 'nope'; known: echo"),
        ({"parameters": {"word": "hi"}}, 422, "host: required (ci)"),
        ({"parameters": {"word": "-rf", "host": "lab-box"}}, 422, "starts with '-'"),
        ({"parameters": {"word": "hi", "host": "lab-box", "x": 1}}, 422, "x: not a parameter"),
        ({"parameters": {"word": "hi", "host": "shop-web-01"}}, 422, "may touch"),
        ({"parameters": {"word": "hi", "host": "nowhere"}}, 422, "not an active CI"),
        ({"cis": ["office-wiki"]}, 422, "office-wiki (service, low criticality) is not a CI"),
        ({"requester": "lin"}, 403, "lin may not request the standard change 'echo'"),
        ({"category": "normal"}, 422, "a template makes a standard change, not a normal one"),
    ],
    ids=[
        "unknown-template",
        "missing-parameter",
        "option-like-value",
        "unknown-parameter",
        "ci-not-allowed",
        "unknown-ci",
        "change-ci-not-allowed",
        "requester-not-allowed",
        "template-as-normal",
    ],
)
def test_a_standard_change_that_is_not_as_its_template_allows_is_refused(
    gateway, rt, body, status, says
):
    request = {
        "title": "echo",
        "template": "echo",
        "parameters": {"word": "hi", "host": "lab-box"},
        **body,
    }
    who = request.pop("requester", "chen")
    answer = gateway.post("/api/changes", json=request, headers=as_person(rt, who, ("reporter",)))
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert stored_changes(rt) == []


@pytest.mark.parametrize("requester", ["chen", "sun"], ids=["named-person", "named-group"])
def test_a_template_change_is_built_from_the_template_and_skips_approval(gateway, rt, requester):
    answer = gateway.post(
        "/api/changes",
        json={
            "title": "say hi",
            "template": "echo",
            "parameters": {"word": "hi there", "host": "lab-box"},
        },
        headers=as_person(rt, requester, ("reporter",)),
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["category"] == "standard" and answer.json()["cis"] == ["lab-box"]
    [change] = stored_changes(rt)
    assert change.plan["steps"][0]["do"]["command"] == (
        "printf '%s\\n' 'hi there'; printf '%s\\n' lab-box"
    )
    assert changes.stages_for(change, rt.policies) == []
    [submitted] = timeline(rt, change.id)
    assert submitted.data["template"] == "echo"
    assert submitted.data["parameters"] == {"word": "hi there", "host": "lab-box"}


async def test_a_template_change_runs_without_approval_and_contained(gateway, rt, prefect_server):
    from itilflow import clock
    from itilflow.flows.change import manage_change

    # A Saturday in Shanghai: inside the default maintenance windows, outside any freeze.
    clock.freeze(datetime(2026, 12, 5, 2, tzinfo=UTC))
    answer = gateway.post(
        "/api/changes",
        json={
            "title": "say it",
            "template": "echo",
            "parameters": {"word": "$(id)", "host": "lab-box"},
        },
        headers=as_person(rt, "chen", ("reporter",)),
    )
    assert answer.status_code == 201, answer.text

    assert await manage_change(answer.json()["id"]) == "successful"

    entries = timeline(rt, answer.json()["id"])
    kinds = [e.kind for e in entries]
    assert "approval_requested" not in kinds and "step_ok" in kinds
    [ran] = [e for e in entries if e.kind == "step_ok"]
    assert ran.data["output"] == "$(id)\nlab-box\n"


async def test_a_template_change_from_the_prefect_form_is_refused(gateway, rt, prefect_server):
    from itilflow.flows.change import request_change

    # The Prefect UI proves nobody's identity: its requester (prefect-operator) holds no role.
    with pytest.raises(changes.NotAllowedToRequest, match="prefect-operator may not request"):
        await request_change(
            title="say it",
            category="standard",
            template="echo",
            parameters={"word": "hi", "host": "lab-box"},
        )
    assert stored_changes(rt) == []


def test_a_standard_change_cannot_be_edited_into_another_plan_nor_a_normal_one_into_standard(
    gateway, rt
):
    standard = gateway.post(
        "/api/changes",
        json={
            "title": "t",
            "template": "echo",
            "parameters": {"word": "a", "host": "lab-box"},
        },
        headers=as_person(rt, "chen", ("reporter",)),
    ).json()
    normal = gateway.post("/api/changes", json={"title": "show env", "plan": ENV_PLAN}).json()
    before = {c.id: (c.category, c.plan, c.version) for c in stored_changes(rt)}

    edited = gateway.patch(f"/api/changes/{standard['number']}", json={"plan": ENV_PLAN})
    assert edited.status_code == 422 and "plan come from its template" in edited.text
    promoted = gateway.patch(f"/api/changes/{normal['number']}", json={"category": "standard"})
    assert promoted.status_code == 422 and "only when submitted from a template" in promoted.text
    assert {c.id: (c.category, c.plan, c.version) for c in stored_changes(rt)} == before


def test_the_templates_are_listed_with_their_parameters(gateway):
    answer = gateway.get("/api/change-templates")
    assert answer.status_code == 200
    [echo] = answer.json()
    assert echo["name"] == "echo"
    assert echo["parameters"]["word"] == {
        "type": "str",
        "description": "",
        "pattern": "[^\\n]{1,200}",
        "max_length": 200,
    }
    assert echo["parameters"]["host"]["type"] == "ci"
    assert echo["requesters"]["people"] == ["chen"]
    assert gateway.get("/api/change-templates", headers={"Authorization": ""}).status_code == 401


# ---------------------------------------------------------------------------------------------
# Parameter values are data, never shell code


@pytest.mark.parametrize(
    "word", ["x; touch {tmp}/pwned", "$(touch {tmp}/pwned)", "`touch {tmp}/pwned`", "a' b\" c"]
)
async def test_a_parameter_value_is_one_literal_argument(rt, tmp_path: Path, word: str):
    word = word.format(tmp=tmp_path)
    with_change_policy(rt, templates={"echo": ECHO_TEMPLATE})
    plan, _ = rt.policies.change.template("echo").build({"word": word, "host": "lab-box"})
    step = ChangePlan.model_validate(plan).steps[0]

    by_shell = await arun_action(step.do, Containment())
    by_argv = await arun_action(step.undo, Containment())

    assert by_shell.ok and by_shell.output == f"{word}\nlab-box\n"
    assert by_argv.ok and by_argv.output == f"{word}|lab-box\n"
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# What a running step can see and reach


@pytest.fixture
def normal_change(rt) -> int:
    with session_scope(rt.engine) as session:
        change = changes.submit_change(
            session=session, new=changes.NewChange(title="t", plan=ENV_PLAN), actor="test"
        )
        assert change.id is not None
        return change.id


async def test_env_in_a_step_shows_no_secret_of_itilflow_or_prefect(
    rt, prefect_server, normal_change, monkeypatch
):
    from itilflow.tasks.change.run_change_action import run_change_action

    planted = {
        "ITILFLOW_API_TOKEN": secrets.token_urlsafe(32),
        "ITILFLOW_SECRET_KEY": secrets.token_urlsafe(32),
        "PREFECT_API_AUTH_STRING": f"admin:{secrets.token_urlsafe(16)}",
        "PREFECT_API_KEY": secrets.token_urlsafe(24),
    }
    for name, value in planted.items():
        monkeypatch.setenv(name, value)

    result = await run_change_action(
        normal_change, "step", "show the environment", ENV_PLAN["steps"][0]["do"]
    )

    assert result.ok and "PATH=" in result.output
    names = {line.split("=", 1)[0] for line in result.output.splitlines()}
    assert names <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "PWD", "SHLVL", "_"}, names
    stored = " ".join(f"{e.message} {e.data}" for e in timeline(rt, normal_change))
    for name, value in planted.items():
        assert name not in stored and value not in stored
    assert "step_ok" in [e.kind for e in timeline(rt, normal_change)]


async def test_secret_values_a_step_prints_are_redacted_on_the_timeline(
    rt, prefect_server, normal_change, monkeypatch
):
    from itilflow.tasks.change.run_change_action import run_change_action

    token = rt.settings.api_token.get_secret_value()
    key = rt.settings.secret_key.get_secret_value()
    password = secrets.token_urlsafe(16)
    rt.settings.smtp_password = SecretStr(secrets.token_urlsafe(20))
    rt.settings.prefect_auth_string = SecretStr(f"admin:{password}")
    own = secrets.token_urlsafe(12)
    smtp = rt.settings.smtp_password.get_secret_value()
    action = {
        "kind": "shell",
        "command": f"echo {token}; echo {key} >&2; echo {password}; echo $OWN; echo {smtp}; exit 3",
        "env": {"OWN": own},
    }

    result = await run_change_action(normal_change, "step", "leak", action)

    assert not result.ok
    assert result.output == "[redacted]\n" * 5
    stored = " ".join(f"{e.message} {e.data}" for e in timeline(rt, normal_change))
    for value in (token, key, password, own, smtp):
        assert value not in stored and value not in result.summary
    assert "[redacted]" in stored


async def test_an_http_step_to_a_host_not_allowed_makes_no_request(
    rt, prefect_server, normal_change, http_sink: HttpSink
):
    from itilflow.tasks.change.run_change_action import run_change_action

    call = {"kind": "http", "method": "POST", "url": f"{http_sink.url}/steal", "json": {"a": 1}}
    with_change_policy(rt, steps=StepsPolicy(http_hosts=["status.example.com"]).model_dump())

    refused = await run_change_action(normal_change, "verify", "call out", call)

    assert not refused.ok and refused.status_code is None
    assert "is not allowed for steps" in refused.summary
    assert "no request was made" in refused.summary
    assert http_sink.requests == []
    [entry] = [e for e in timeline(rt, normal_change) if e.kind == "verify_failed"]
    assert "is not allowed for steps (change.yaml steps.http_hosts)" in entry.message

    # The same call under the default policy (localhost allowed) does reach the sink.
    with_change_policy(rt, steps=StepsPolicy().model_dump())
    allowed = await run_change_action(normal_change, "verify", "call out", call)
    assert allowed.ok, allowed.summary
    assert len(http_sink.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("url", "hosts", "allowed"),
    [
        ("http://localhost@evil.example/", ("localhost",), False),
        ("http://evil.example#@localhost/", ("localhost",), False),
        ("https://api.example.com/x", ("*.example.com",), True),
        ("https://example.com.evil.net/", ("*.example.com",), False),
        ("https://status.example.com:8443/", ("status.example.com:443",), False),
        ("https://status.example.com/", ("status.example.com:443",), True),
        ("http://[::1]:9/", ("[::1]",), True),
    ],
)
async def test_the_host_allow_list_reads_the_url_as_the_client_does(url, hosts, allowed):
    result = await arun_action(
        ChangePlan.model_validate(
            {
                "steps": [
                    {
                        "name": "s",
                        "do": {"kind": "http", "url": url, "timeout": 1},
                        "irreversible": True,
                    }
                ]
            }
        )
        .steps[0]
        .do,
        Containment(http_hosts=hosts),
    )
    assert ("is not allowed for steps" in result.summary) is not allowed, result.summary


# ---------------------------------------------------------------------------------------------
# User and folder


async def test_a_step_runs_as_the_configured_user_in_a_private_folder_removed_after():
    action = (
        ChangePlan.model_validate(
            {
                "steps": [
                    {
                        "name": "s",
                        "irreversible": True,
                        "do": {"kind": "shell", "command": "id -u; pwd; stat -c %a .; echo $HOME"},
                    }
                ]
            }
        )
        .steps[0]
        .do
    )
    import os

    if os.geteuid() != 0:
        pytest.skip("switching user needs root")
    result = await arun_action(action, Containment(run_as="nobody"))
    uid, folder, mode, home = result.output.splitlines()
    assert result.ok and uid == "65534" and mode == "700" and home == "/nonexistent"
    assert "itilflow-step-" in folder and not Path(folder).exists()


async def test_a_user_that_cannot_be_switched_to_refuses_the_step(tmp_path: Path):
    marker = tmp_path / "ran"
    action = (
        ChangePlan.model_validate(
            {
                "steps": [
                    {
                        "name": "s",
                        "irreversible": True,
                        "do": {"kind": "shell", "command": f"touch {marker}"},
                    }
                ]
            }
        )
        .steps[0]
        .do
    )
    result = await arun_action(action, Containment(run_as="no-such-user-here"))
    assert not result.ok and "no OS user 'no-such-user-here'" in result.summary
    assert not marker.exists()


async def test_a_cwd_outside_the_allowed_roots_is_refused(tmp_path: Path):
    inside, outside = tmp_path / "ops", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "escape").symlink_to(outside)
    contained = Containment(cwd_roots=(str(inside),))

    def touching(cwd: Path) -> Any:
        return (
            ChangePlan.model_validate(
                {
                    "steps": [
                        {
                            "name": "s",
                            "irreversible": True,
                            "do": {"kind": "shell", "command": "touch ran", "cwd": str(cwd)},
                        }
                    ]
                }
            )
            .steps[0]
            .do
        )

    assert (await arun_action(touching(inside), contained)).ok
    for cwd in (outside, inside / "escape", inside / ".." / "elsewhere"):
        result = await arun_action(touching(cwd), contained)
        assert not result.ok and "outside the allowed roots" in result.summary
    assert (inside / "ran").exists() and not (outside / "ran").exists()


def test_a_worker_that_cannot_run_steps_as_the_policy_user_refuses_to_start(
    tmp_path: Path, monkeypatch, capsys
):
    from itilflow.cli import main
    from itilflow.policies import default_policy_dir

    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    for source in default_policy_dir().iterdir():
        text = source.read_text(encoding="utf-8")
        (policy_dir / source.name).write_text(
            text.replace("run_as: null", "run_as: no-such-user-here"), encoding="utf-8"
        )
    monkeypatch.setenv("ITILFLOW_POLICY_DIR", str(policy_dir))
    monkeypatch.setenv("ITILFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ITILFLOW_API_TOKEN", secrets.token_urlsafe(32))
    monkeypatch.setenv("ITILFLOW_SECRET_KEY", secrets.token_urlsafe(32))
    # Unset, so that a worker that did not refuse would stop at this instead of starting.
    monkeypatch.delenv("ITILFLOW_PREFECT_API_URL", raising=False)

    assert main(["worker"]) == 2
    error = capsys.readouterr().err
    assert "no OS user 'no-such-user-here' to run steps as (change.yaml steps.run_as)" in error
