"""`itilflow prefect-server` and `itilflow deploy`, the commands the systemd units run beside
`worker`, `runner` and `gateway` (deploy/systemd/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from itilflow.cli import main


class Replaced(Exception):
    """os.execve was called: what would have replaced the process."""


def test_prefect_server_runs_prefect_on_asyncio_and_h11_with_the_stacks_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PREFECT_HOME", "ITILFLOW_PREFECT_AUTH_STRING", "ITILFLOW_PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ITILFLOW_PREFECT_HOST", "0.0.0.0")
    monkeypatch.setenv("ITILFLOW_PREFECT_PORT", "4321")
    seen: dict[str, object] = {}

    def execve(path: str, args: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, args=args, env=env)
        raise Replaced

    monkeypatch.setattr("os.execve", execve)
    with pytest.raises(Replaced):
        main(["--data-dir", str(tmp_path), "prefect-server"])
    assert seen["path"] == sys.executable
    assert seen["args"] == [
        sys.executable,
        *("-m", "itilflow.prefect_server", "server", "start"),
        *("--host", "0.0.0.0", "--port", "4321"),
    ]
    env = seen["env"]
    assert isinstance(env, dict)
    stored = (tmp_path / "prefect-auth").read_text().strip()
    assert stored.startswith("itilflow:") and env["PREFECT_SERVER_API_AUTH_STRING"] == stored
    assert env["PREFECT_HOME"] == str(tmp_path.resolve() / "prefect")


def test_deploy_refuses_without_a_prefect_server_to_deploy_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ITILFLOW_PREFECT_API_URL", raising=False)
    assert main(["--data-dir", str(tmp_path), "deploy"]) == 2
    assert "ITILFLOW_PREFECT_API_URL not set" in capsys.readouterr().err


def test_the_prefect_server_module_pins_uvicorns_auto_choices() -> None:
    import uvicorn.config

    from itilflow.prefect_server import pin_asyncio_and_h11

    loops, protocols = dict(uvicorn.config.LOOP_FACTORIES), dict(uvicorn.config.HTTP_PROTOCOLS)
    try:
        pin_asyncio_and_h11()
        assert uvicorn.config.LOOP_FACTORIES["auto"] == loops["asyncio"]
        assert uvicorn.config.HTTP_PROTOCOLS["auto"] == protocols["h11"]
    finally:
        uvicorn.config.LOOP_FACTORIES.update(loops)
        uvicorn.config.HTTP_PROTOCOLS.update(protocols)
