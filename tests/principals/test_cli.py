"""`itilflow token ...` and `itilflow role ...` on the configured database: what they print, what
they store (who ran them), and refusals that name what was wrong with exit code 2."""

from __future__ import annotations

import getpass
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from itilflow.cli import main
from itilflow.models import ApiToken, RoleGrant, session_scope
from itilflow.services import principals

PROJECT = Path(__file__).resolve().parents[2]
WHO = f"cli:{getpass.getuser()}"


def itilflow(rt: Any, *args: str) -> int:
    return main(["--data-dir", str(rt.settings.data_dir), *args])


def test_token_create_prints_the_token_once_and_stores_its_hash(rt: Any, capsys: Any) -> None:
    assert itilflow(rt, "token", "create", "lin", "--expires", "90d", "--note", "laptop") == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("itf_") and "\n" not in token
    assert "token 1 for person lin, expires" in err and token not in err
    with Session(rt.engine) as session:
        row = session.exec(select(ApiToken)).one()
        assert row.token_hash == principals.hash_token(token)
        assert (row.principal, row.kind, row.note, row.created_by) == (
            "lin", "person", "laptop", WHO,
        )  # fmt: skip
        assert row.expires_at is not None
        assert 89 <= (row.expires_at - row.created_at).days <= 90
    with session_scope(rt.engine) as session:
        assert principals.authenticate_token(session=session, token=token).name == "lin"
    assert itilflow(rt, "token", "list") == 0
    listing = capsys.readouterr().out
    assert token not in listing and token[:10] + "..." in listing and "laptop" not in listing
    assert listing.splitlines()[0].split()[:4] == ["id", "name", "kind", "prefix"]


def test_token_list_revoke_and_integration_tokens(rt: Any, capsys: Any) -> None:
    assert itilflow(rt, "token", "create", "alertmanager", "--integration") == 0
    assert itilflow(rt, "token", "create", "chen") == 0
    token = capsys.readouterr().out.split()[0]
    assert itilflow(rt, "token", "list", "alertmanager") == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[1:3] == ["alertmanager", "integration"]
    assert itilflow(rt, "token", "revoke", "1") == 0
    assert "token 1 of integration alertmanager revoked" in capsys.readouterr().out
    with Session(rt.engine) as session:
        row = session.get(ApiToken, 1)
        assert row is not None and row.revoked_by == WHO
        assert principals.authenticate_token(session=session, token=token) is None


def test_role_grant_list_and_revoke(rt: Any, capsys: Any) -> None:
    assert itilflow(rt, "role", "grant", "agent", "lin") == 0
    assert itilflow(rt, "role", "grant", "approver", "--group", "applications") == 0
    assert itilflow(rt, "role", "grant", "reporter", "--integration", "alertmanager") == 0
    capsys.readouterr()
    assert itilflow(rt, "role", "list") == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listing[1:]] == [
        ["approver", "group", "applications"],
        ["reporter", "integration", "alertmanager"],
        ["agent", "person", "lin"],
    ]
    assert all(WHO in line for line in listing[1:])
    assert itilflow(rt, "role", "revoke", "agent", "lin") == 0
    with Session(rt.engine) as session:
        assert len(session.exec(select(RoleGrant)).all()) == 2


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("token", "create", "nobody"), "there is no person 'nobody'"),
        (("token", "create", "lin", "--expires", "soon"), "--expires: expected a duration"),
        (("token", "create", "admin", "--integration"), "bootstrap token's name"),
        (("token", "revoke", "42"), "there is no token 42"),
        (("role", "grant", "boss", "lin"), "role: expected one of reporter, agent"),
        (("role", "grant", "agent"), "name one subject"),
        (("role", "grant", "agent", "lin", "--group", "dba"), "name one subject"),
        (("role", "grant", "agent", "--group", "ghosts"), "no group 'ghosts'"),
        (("role", "revoke", "agent", "lin"), "person lin has no grant of the role agent"),
        (("role", "revoke", "boss", "lin"), "role: expected one of"),
    ],
)
def test_refusals_name_what_was_wrong_and_exit_2(
    rt: Any, capsys: Any, args: tuple[str, ...], says: str
) -> None:
    assert itilflow(rt, *args) == 2
    out, err = capsys.readouterr()
    assert says in err and out == ""
    with Session(rt.engine) as session:
        assert session.exec(select(ApiToken)).first() is None
        assert session.exec(select(RoleGrant)).first() is None


def test_token_create_as_a_process_prints_only_the_token_on_stdout(rt: Any) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "itilflow.cli", "--data-dir", str(rt.settings.data_dir),
         "token", "create", "wang"],
        cwd=PROJECT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("itf_") and token not in done.stderr
    with session_scope(rt.engine) as session:
        assert principals.authenticate_token(session=session, token=token).name == "wang"
