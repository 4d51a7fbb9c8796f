from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

import pytest

from itilflow.cli import main
from itilflow.settings import SECRET_BLOCK_FIELDS, Settings, SettingsError


def test_outside_demo_mode_missing_secrets_refuse_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("ITILFLOW_API_TOKEN", raising=False)
    monkeypatch.delenv("ITILFLOW_SECRET_KEY", raising=False)
    settings = Settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(SettingsError, match="ITILFLOW_API_TOKEN, ITILFLOW_SECRET_KEY"):
        settings.require_secrets()
    assert not (tmp_path / "secrets.env").exists()


def test_demo_mode_makes_secrets_once_and_keeps_them_private(tmp_path, monkeypatch):
    monkeypatch.delenv("ITILFLOW_API_TOKEN", raising=False)
    monkeypatch.delenv("ITILFLOW_SECRET_KEY", raising=False)
    first = Settings(data_dir=tmp_path, demo=True, _env_file=None)
    first.require_secrets()
    second = Settings(data_dir=tmp_path, demo=True, _env_file=None)
    second.require_secrets()
    assert first.api_token.get_secret_value() == second.api_token.get_secret_value()
    assert len(first.secret_key.get_secret_value()) >= 32
    mode = (tmp_path / "secrets.env").stat().st_mode
    assert not mode & (stat.S_IRGRP | stat.S_IROTH)


def test_gateway_refuses_to_start_without_secrets(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ITILFLOW_API_TOKEN", raising=False)
    monkeypatch.delenv("ITILFLOW_SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["--data-dir", str(tmp_path), "gateway"]) == 2
    assert "refuses to start" in capsys.readouterr().err


def test_check_policies_names_the_file_and_key(tmp_path, capsys):
    from shutil import copytree

    from itilflow.policies import default_policy_dir

    copytree(str(default_policy_dir()), tmp_path / "p")
    sla = tmp_path / "p" / "sla.yaml"
    sla.write_text(sla.read_text().replace("response: 30m", "response: soon", 1))
    assert main(["check-policies", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "sla.yaml" in err and "response" in err and "soon" in err
    assert main(["check-policies"]) == 0


def test_secrets_come_from_prefect_secret_blocks_named_by_settings(prefect_server, tmp_path):
    from prefect.blocks.system import Secret

    from itilflow.stack import Stack

    values = {field: secrets.token_urlsafe(32) for field in SECRET_BLOCK_FIELDS}
    for field, value in values.items():
        Secret(value=value).save(f"itilflow-test-{field.replace('_', '-')}", overwrite=True)
    settings = Settings(
        data_dir=tmp_path,
        _env_file=None,
        **{
            f"{field}_secret_block": f"itilflow-test-{field.replace('_', '-')}"
            for field in SECRET_BLOCK_FIELDS
        },
    )
    settings.require_secrets()
    assert {f: getattr(settings, f).get_secret_value() for f in SECRET_BLOCK_FIELDS} == values
    assert settings.from_secret_blocks == set(SECRET_BLOCK_FIELDS)
    assert not any(value in repr(settings) for value in values.values())

    # `itilflow up` hands its children the block names, never the values.
    env = Stack(settings).env()
    assert not any(value in "\n".join(env.values()) for value in values.values())
    assert env["ITILFLOW_SMTP_PASSWORD_SECRET_BLOCK"] == "itilflow-test-smtp-password"
    assert env["ITILFLOW_API_TOKEN"] == ""


def test_a_secret_set_directly_wins_over_its_block_and_a_missing_block_is_named(
    prefect_server, tmp_path
):
    settings = Settings(
        data_dir=tmp_path,
        api_token="given",
        api_token_secret_block="no-such-block",
        _env_file=None,
    )
    assert settings.api_token.get_secret_value() == "given"
    with pytest.raises(SettingsError, match="could not read Secret block 'no-such-block'"):
        Settings(data_dir=tmp_path, secret_key_secret_block="no-such-block", _env_file=None)


def test_a_secret_block_without_a_prefect_api_is_refused_not_a_temporary_server(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(SettingsError, match="nor PREFECT_API_URL is set"):
            Settings(data_dir=tmp_path, smtp_password_secret_block="mail", _env_file=None)


def test_up_passes_the_prefect_auth_string_to_the_server_it_starts_and_its_clients(tmp_path):
    from itilflow.stack import Stack

    settings = Settings(
        data_dir=tmp_path,
        api_token="t" * 20,
        secret_key="k" * 20,
        prefect_auth_string="admin:pass",
        _env_file=None,
    )
    env = Stack(settings).env()
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == "admin:pass"
    settings.prefect_api_url = "http://prefect.internal:4200/api"
    passed = Stack(settings).secrets_env()  # an existing server: up starts none
    assert passed["PREFECT_API_AUTH_STRING"] == "admin:pass"
    assert "PREFECT_SERVER_API_AUTH_STRING" not in passed


def test_up_starts_the_number_of_workers_asked_for(tmp_path):
    from itilflow.cli import _settings, build_parser
    from itilflow.stack import Stack

    args = build_parser().parse_args(["--data-dir", str(tmp_path), "up", "--workers", "3"])
    assert _settings(args).workers == 3
    names = {Stack(_settings(args)).worker_command(n)[-1] for n in (1, 2, 3)}
    assert len(names) == 3  # one pool, three workers with their own names
    assert Settings(data_dir=tmp_path, _env_file=None).workers == 1


def test_every_api_route_refuses_a_request_without_the_bearer_token(client):
    """docs/security.md: every route but health (and the signed link pages) needs the token."""
    client.headers.pop("Authorization")
    # The app's own list of its routes (included routers are not all in `app.routes`).
    paths = client.get("/openapi.json").json()["paths"]
    checked = 0
    for route, methods in paths.items():
        if not route.startswith("/api"):
            continue
        for method in methods:
            path = re.sub(r"\{[^}]+\}", "1", route)
            response = client.request(method.upper(), path, json={})
            assert response.status_code == 401, (method, route, response.status_code)
            checked += 1
    assert checked >= 15
    assert client.get("/health").status_code == 200


@pytest.mark.timeout(300)
def test_up_with_secrets_from_blocks_prints_and_logs_none_of_them(prefect_server, tmp_path):
    """`itilflow up` against an existing Prefect server (the session's test server), every
    secret from a Secret block: the gateway works with the token, and no secret appears in
    up's output, its children's logs or their environments."""
    import signal
    import subprocess
    import sys
    import time

    import httpx
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL

    from tests.support.smtp import free_port

    values = {field: secrets.token_urlsafe(32) for field in SECRET_BLOCK_FIELDS}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITILFLOW_", "PREFECT_"))}
    for field, value in values.items():
        name = f"itilflow-up-{field.replace('_', '-')}"
        Secret(value=value).save(name, overwrite=True)
        env[f"ITILFLOW_{field.upper()}_SECRET_BLOCK"] = name
    port = free_port()
    env.update(
        ITILFLOW_PREFECT_API_URL=PREFECT_API_URL.value(),
        ITILFLOW_GATEWAY_PORT=str(port),
        ITILFLOW_WORKERS="0",
        ITILFLOW_SMTP_PORT="9",
        ITILFLOW_SMTP_USER="itilflow",
    )
    data = tmp_path / "data"
    project = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, "-m", "itilflow.cli", "--data-dir", str(data), "up"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    children: list[int] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        assert "Ctrl-C stops everything" in "".join(output), "".join(output)
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/incidents",
            headers={"Authorization": f"Bearer {values['api_token']}"},
            trust_env=False,
        )
        assert response.status_code == 200  # the gateway read the token from its block
        children = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent_of(p) == process.pid
        ]
        environments = b"".join(_environ(pid) for pid in children)
        assert children and not any(v.encode() in environments for v in values.values())
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
        output.append(rest)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _delete_scheduled_deployments()
    printed = "".join(output) + "".join(
        log.read_text(errors="replace") for log in (data / "logs").glob("*.log")
    )
    assert "$ITILFLOW_API_TOKEN" in printed
    for value in values.values():
        assert value not in printed


def _parent_of(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _delete_scheduled_deployments() -> None:
    """`up` registered every deployment with its schedules on the session's server: remove the
    scheduled ones, so no later test's worker picks up an inspection or a reminder run."""
    import asyncio

    from prefect import get_client

    async def delete() -> None:
        async with get_client() as client:
            for deployment in await client.read_deployments():
                if deployment.schedules:
                    await client.delete_deployment(deployment.id)

    asyncio.run(delete())
