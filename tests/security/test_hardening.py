"""Issue 12's hardening, one test per finding: weak or blank secrets, a readable data folder, an
empty bearer token, markup from user text in artifacts, one alert spelled with two offsets.

Each is refused (or made harmless) and changes nothing. The attacks on identity, approvals and
steps have their own modules here.
"""

from __future__ import annotations

import os
import secrets
import stat

import pytest

from itilflow.notifications.markdown import markdown_text
from itilflow.settings import Settings, SettingsError
from tests.gateway.test_alertmanager_webhook import counts, firing, send


def test_outside_demo_mode_a_short_secret_is_refused_naming_it(tmp_path):
    strong = secrets.token_urlsafe(32)
    settings = Settings(data_dir=tmp_path, api_token="admin", secret_key=strong, _env_file=None)
    with pytest.raises(SettingsError, match="ITILFLOW_API_TOKEN too short") as refused:
        settings.require_secrets()
    assert "ITILFLOW_SECRET_KEY" not in str(refused.value)
    assert "token_urlsafe(32)" in str(refused.value)  # says how to make a good one
    assert "admin" not in str(refused.value)  # and never echoes the secret
    Settings(data_dir=tmp_path, api_token=strong, secret_key=strong, _env_file=None)


def test_outside_demo_mode_blank_secrets_are_missing_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("ITILFLOW_API_TOKEN", "")
    monkeypatch.setenv("ITILFLOW_SECRET_KEY", "   ")
    settings = Settings(data_dir=tmp_path, _env_file=None)
    with pytest.raises(SettingsError, match="ITILFLOW_API_TOKEN"):
        settings.require_secrets()


def test_demo_mode_replaces_blank_stored_secrets_instead_of_keeping_an_empty_token(tmp_path):
    (tmp_path / "secrets.env").write_text("ITILFLOW_API_TOKEN=\nITILFLOW_SECRET_KEY=kept-key\n")
    settings = Settings(data_dir=tmp_path, demo=True, _env_file=None)
    settings.require_secrets()
    token = settings.api_token.get_secret_value()
    assert len(token) >= 43
    assert settings.secret_key.get_secret_value() == "kept-key"
    assert f"ITILFLOW_API_TOKEN={token}\n" in (tmp_path / "secrets.env").read_text()


def test_the_data_folder_is_made_private_and_what_was_readable_is_tightened(tmp_path):
    from itilflow.stack import keep_data_private

    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "logs" / "gateway.log").write_text("old\n")
    (data / "logs" / "gateway.log").chmod(0o644)
    data.chmod(0o755)
    umask = os.umask(0o022)
    try:
        keep_data_private(data)
        (data / "itilflow.db").write_text("new")  # as a child of `up` would make it
    finally:
        os.umask(umask)
    modes = {
        path.relative_to(data).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in data.rglob("*")
    }
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert modes == {"logs": 0o700, "logs/gateway.log": 0o600, "itilflow.db": 0o600}


def test_the_same_instant_spelled_with_another_offset_is_the_same_occurrence(client, rt):
    first = send(client, firing()).json()["alerts"][0]
    for spelled in ("2026-11-24T01:43:43.882+08:00", "2026-11-23T17:43:43.882+00:00"):
        again = firing()
        again["alerts"][0]["startsAt"] = spelled  # 2026-11-23T17:43:43.882Z
        [result] = send(client, again).json()["alerts"]
        assert (result["outcome"], result["id"]) == ("duplicate", first["id"]), spelled
    assert counts(rt) == (1, 1, 1)


@pytest.mark.parametrize("given", ["", " ", "Bearer", "Bearer ", "Bearer  ", "Basic "])
def test_an_empty_or_malformed_bearer_token_is_refused(client, given):
    response = client.get("/api/incidents", headers={"Authorization": given})
    assert response.status_code == 401


def test_markdown_from_user_text_is_shown_not_interpreted():
    hostile = "Printer [click](javascript:alert(1)) ![x](http://evil.example/x.png) <b>x</b>"
    shown = markdown_text(hostile)
    for construct in ("](", "![", "<b>", "[click]"):
        assert construct not in shown, shown
    assert shown.replace("\\", "") == hostile
