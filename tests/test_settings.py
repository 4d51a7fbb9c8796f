from __future__ import annotations

import stat

import pytest

from itilflow.cli import main
from itilflow.settings import Settings, SettingsError


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
