"""`itilflow up` starts the mail intake only when mail.yaml enables it, and `itilflow
mail-intake` refuses to run without the mailbox password (the stack's parts stubbed: the full
`up` is tests/test_stack.py's, the intake itself test_mail_e2e.py's)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from itilflow import cli
from itilflow.stack import Stack
from tests.conftest import make_settings
from tests.support.mail import mail_policy_dir


@pytest.mark.parametrize("enabled", [False, True])
def test_up_starts_the_mail_intake_only_when_enabled(tmp_path, monkeypatch, enabled):
    settings = make_settings(tmp_path, prefect_api_url="http://127.0.0.1:9/api", workers=0)
    stack = Stack(settings, mail_intake=enabled)
    started: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(stack, "start", lambda name, command, **_: started.append((name, command)))
    monkeypatch.setattr(stack, "deployments_up_to_date", lambda: True)
    monkeypatch.setattr(stack, "start_gateway", lambda command: None)
    stack.up()
    names = [name for name, _ in started]
    assert ("mail-intake" in names) is enabled
    if enabled:
        command = dict(started)["mail-intake"]
        assert command[-1] == "mail-intake" and command[-2] == "itilflow.cli"


def fake_dovecot() -> SimpleNamespace:
    return SimpleNamespace(host="127.0.0.1", port=9, user="servicedesk")


def test_mail_intake_exits_quietly_while_the_policy_is_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("ITILFLOW_DATA_DIR", str(tmp_path))
    assert cli.main(["mail-intake"]) == 0
    assert "enabled: false" in capsys.readouterr().err


def test_mail_intake_refuses_to_start_without_its_password(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setenv("ITILFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ITILFLOW_POLICY_DIR", str(mail_policy_dir(tmp_path, fake_dovecot())))
    monkeypatch.delenv("ITILFLOW_TEST_MAIL_PASSWORD", raising=False)
    assert cli.main(["mail-intake"]) == 2
    assert "ITILFLOW_TEST_MAIL_PASSWORD is not set" in capsys.readouterr().err
