"""`itilflow up` as a user meets it: expected startup errors printed alone, and the client
commands' own errors. A demo stack on ports other than the defaults, without node_exporter, whose
own inspection and client commands follow its settings: tests/test_stack.py's second start
(tests/support/demo_stack.py), which saves this file a stack of its own."""

from __future__ import annotations

from pathlib import Path

from tests.support.demo_stack import clean_env, itilflow
from tests.support.smtp import free_port

PROJECT = Path(__file__).resolve().parent.parent


def test_up_on_an_invalid_policy_prints_the_policy_error_alone(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for default in (PROJECT / "policies" / "defaults").glob("*.yaml"):
        (policies / default.name).write_text(default.read_text())
    sla = policies / "sla.yaml"
    sla.write_text(sla.read_text().replace("\n  P1:", "\n  P9:", 1))

    result = itilflow(
        "--data-dir",
        str(tmp_path / "data"),
        "up",
        "--demo",
        env=clean_env(ITILFLOW_POLICY_DIR=str(policies)),
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith(f"itilflow: invalid policies in {policies}:\nsla.yaml: ")
    assert "P9" in result.stderr and "expected one of P1, P2, P3, P4" in result.stderr
    assert not (tmp_path / "data" / "logs").exists(), "nothing was started"


def test_up_on_an_invalid_setting_prints_it_alone(tmp_path: Path) -> None:
    result = itilflow(
        "--data-dir",
        str(tmp_path / "data"),
        "up",
        "--demo",
        env=clean_env(ITILFLOW_GATEWAY_PORT="eighty"),
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "gateway_port" in result.stderr and "integer" in result.stderr


def test_client_commands_say_where_they_looked_for_a_token(tmp_path: Path) -> None:
    result = itilflow(
        "--data-dir", str(tmp_path / "nothing-here"), "incident", "show", "1", env=clean_env()
    )
    assert result.returncode == 2
    assert "no API token: ITILFLOW_API_TOKEN is not set" in result.stderr
    assert str(tmp_path / "nothing-here" / "secrets.env") in result.stderr
    assert "Traceback" not in result.stderr


def test_client_commands_say_when_the_gateway_is_not_there(tmp_path: Path) -> None:
    port = free_port()
    result = itilflow(
        "change",
        "submit",
        "docs/examples/change.yaml",
        env=clean_env(ITILFLOW_API_TOKEN="some-token", ITILFLOW_API_URL=f"http://127.0.0.1:{port}"),
    )
    assert result.returncode == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
