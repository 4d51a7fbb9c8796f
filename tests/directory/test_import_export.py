"""`itilflow import` / `itilflow export`: YAML and CSV, idempotent, a dry run that writes nothing,
and one bad row that refuses the whole file with its file, line and column."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from itilflow.cli import main
from itilflow.models import ConfigurationItem, Engineer, Group, get_engine

TEAM_YAML = """\
groups:
  - {name: ops, lead: ann, manager: ann, escalation_contacts: [ann], email: ops@example.com}
  - {name: dba}
people:
  - username: ann
    name: Ann Lee
    email: ann@example.com
    phone: "+49 30 5555 0101"
    language: en
    time_zone: Europe/Berlin
    groups: [ops, dba]
    skills: [linux, database]
    capacity: 4
  - {username: bob, name: Bob Ray, groups: [ops], on_duty: false}
cis:
  - {name: db-1, kind: database, criticality: high, owner_group: dba, environment: production}
  - {name: web-1, owner_group: ops, depends_on: [db-1], attributes: {rack: A3}}
"""

PEOPLE_CSV = """\
username,name,email,groups,skills,capacity
ann,Ann Lee,ann@example.com,ops;dba,linux;database,4
bob,Bob Ray,,ops,,
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def itilflow(data_dir: Path, *args: str) -> int:
    # As after `itilflow up` (or `itilflow db upgrade`): the commands only check the schema. On
    # PostgreSQL the test's database (ITILFLOW_DATABASE_URL) is a copy of a migrated one.
    on_sqlite = "ITILFLOW_DATABASE_URL" not in os.environ
    if on_sqlite and not (data_dir / "itilflow.db").exists() and args[0] in ("import", "export"):
        assert main(["--data-dir", str(data_dir), "db", "upgrade"]) == 0
    return main(["--data-dir", str(data_dir), *args])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    from itilflow.settings import Settings

    url = Settings(data_dir=data_dir).database_url
    assert url is not None
    engine = get_engine(url)
    with Session(engine) as session:
        return {
            table.__name__: sorted(
                (row.model_dump() for row in session.exec(select(table))),
                key=lambda r: str(sorted(r.items())),
            )
            for table in (Group, Engineer, ConfigurationItem)
        }


def test_a_yaml_file_loads_and_a_second_import_changes_nothing(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = write(tmp_path / "team.yaml", TEAM_YAML)
    assert itilflow(data_dir, "import", str(team)) == 0
    out = capsys.readouterr().out
    assert "groups: 2 created" in out and "people: 2 created" in out and "cis: 2 created" in out
    loaded = snapshot(data_dir)
    ann = next(e for e in loaded["Engineer"] if e["username"] == "ann")
    assert ann["group_name"] == "ops" and ann["groups"] == ["ops", "dba"]
    assert ann["time_zone"] == "Europe/Berlin" and ann["capacity"] == 4
    web = next(c for c in loaded["ConfigurationItem"] if c["name"] == "web-1")
    assert web["depends_on"] == ["db-1"] and web["attributes"] == {"rack": "A3"}

    assert itilflow(data_dir, "import", str(team)) == 0
    out = capsys.readouterr().out
    assert "nothing to change" in out
    assert "people: 0 created, 0 changed, 2 unchanged" in out
    assert snapshot(data_dir) == loaded


def test_a_dry_run_prints_the_diff_and_writes_nothing(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    before = snapshot(data_dir)
    capsys.readouterr()
    changed = PEOPLE_CSV.replace("linux;database,4", "linux,5") + "cy,Cy Ng,,dba,,\n"
    people = write(tmp_path / "people.csv", changed)

    assert itilflow(data_dir, "import", "--dry-run", str(people)) == 0
    out = capsys.readouterr().out
    assert "people: 1 created, 1 changed, 1 unchanged" in out
    assert "+ people cy" in out
    assert "~ people ann: skills ['linux', 'database'] -> ['linux']; capacity 4 -> 5" in out
    assert "dry run: nothing would be written" in out
    assert snapshot(data_dir) == before


def test_one_bad_row_refuses_the_whole_file(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    before = snapshot(data_dir)
    capsys.readouterr()
    bad = PEOPLE_CSV.replace("Ann Lee", "Ann Smith") + "cy,Cy Ng,cy@,ops,,-2\ndan,Dan,,nope,,\n"
    people = write(tmp_path / "people.csv", bad)

    assert itilflow(data_dir, "import", str(people)) == 1
    err = capsys.readouterr().err
    assert "refused, nothing was written" in err
    assert f"{people} line 4, column email: expected an email address" in err
    assert f"{people} line 4, column capacity: Input should be greater than or equal to 0" in err
    assert f"{people} line 5, column groups: unknown group 'nope'" in err
    assert snapshot(data_dir) == before  # Ann's new name (line 2) was not written either


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("people.csv", "username,name,group\nx,X,ops\n", "line 1, column group: unknown field"),
        ("people.csv", "username,name,groups,on_duty\nx,X,ops,maybe\n", "line 2, column on_duty"),
        ("people.csv", "username,name,groups\nx,X\n", "line 2: 2 cells, the header has 3"),
        ("cis.csv", "name,kind,attributes\nc,server,[1]\n", "line 2, column attributes"),
        ("cis.csv", "name,kind,depends_on\nc,server,c\n", "'c' cannot depend on itself"),
        ("cis.csv", "name,kind,depends_on\nc,server,gone\n", "depends on unknown CI 'gone'"),
        ("items.csv", "name\nc\n", "cannot tell groups, people or cis"),
        ("people.csv", "username,name,groups\nx,X,ops\nx,X2,ops\n", "line 3, column username"),
        ("team.yaml", "people:\n  - {username: x, name: X, groups: [ops], tz: UTC}\n", "column tz"),
        ("team.yaml", "persons: []\n", "unknown section"),
        (
            "team.yaml",
            "people:\n  - {username: x, name: X, groups: [ops], language: fr}\n",
            "team.yaml line 2, column language",
        ),
        ("team.txt", "x", "expected a .yaml, .yml or .csv file"),
    ],
)
def test_bad_files_are_refused_with_where_and_what(
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    expected: str,
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    before = snapshot(data_dir)
    capsys.readouterr()
    assert itilflow(data_dir, "import", str(write(tmp_path / name, text))) == 1
    err = capsys.readouterr().err
    assert expected in err and name in err, err
    assert snapshot(data_dir) == before


def test_a_csv_kind_can_be_named_and_missing_rows_are_left_alone(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    capsys.readouterr()
    groups = write(tmp_path / "g.csv", "name,email\nops,ops-team@example.com\n")
    assert itilflow(data_dir, "import", "--kind", "groups", str(groups)) == 0
    out = capsys.readouterr().out
    assert "groups: 0 created, 1 changed, 0 unchanged; 1 not in the file, left alone" in out
    assert {g["name"]: g["active"] for g in snapshot(data_dir)["Group"]} == {
        "ops": True,
        "dba": True,
    }


def test_deactivate_missing_only_touches_the_files_kinds(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    capsys.readouterr()
    people = write(tmp_path / "people.csv", "username,name,groups\nann,Ann Lee,ops;dba\n")
    assert itilflow(data_dir, "import", "--deactivate-missing", str(people)) == 0
    assert "- people bob: deactivated" in capsys.readouterr().out
    after = snapshot(data_dir)
    assert {e["username"]: e["active"] for e in after["Engineer"]} == {"ann": True, "bob": False}
    assert all(row["active"] for row in after["Group"] + after["ConfigurationItem"])


def test_deactivate_missing_is_refused_when_an_active_record_needs_the_missing_one(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    before = snapshot(data_dir)
    capsys.readouterr()
    groups = write(tmp_path / "groups.csv", "name,lead\nops,ann\n")
    assert itilflow(data_dir, "import", "--deactivate-missing", str(groups)) == 1
    assert "group 'dba' still has active members (ann)" in capsys.readouterr().err
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_what_is_exported_imports_back_unchanged(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    before = snapshot(data_dir)
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    if fmt == "yaml":
        files = [out_dir / "team.yaml"]
        assert itilflow(data_dir, "export", "--output", str(files[0])) == 0
    else:
        assert itilflow(data_dir, "export", "--format", "csv", "--output", str(out_dir)) == 0
        files = [out_dir / f"{kind}.csv" for kind in ("groups", "people", "cis")]
    capsys.readouterr()

    fresh = tmp_path / "fresh"
    assert itilflow(fresh, "import", *map(str, files)) == 0
    assert snapshot(fresh) == before
    assert itilflow(data_dir, "import", *map(str, files)) == 0
    assert "nothing to change" in capsys.readouterr().out


def test_export_of_one_kind_to_stdout(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    itilflow(data_dir, "import", str(write(tmp_path / "team.yaml", TEAM_YAML)))
    capsys.readouterr()
    assert itilflow(data_dir, "export", "--format", "csv", "--kind", "people") == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0]
        == "username,name,email,phone,language,time_zone,groups,skills,capacity,on_duty,active"
    )
    assert lines[1].startswith(
        "ann,Ann Lee,ann@example.com,+49 30 5555 0101,en,Europe/Berlin,ops;dba"
    )
    assert itilflow(data_dir, "export", "--format", "csv") == 2


def test_the_help_says_nothing_is_deleted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Nothing is deleted: records missing from the file are left alone" in text


def test_a_database_not_at_the_codes_revision_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database without itilflow's schema (on PostgreSQL too: the test's own is migrated).
    monkeypatch.setenv("ITILFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'none.db'}")
    team = write(tmp_path / "team.yaml", TEAM_YAML)
    assert main(["--data-dir", str(tmp_path / "none"), "import", str(team)]) == 2
    assert "itilflow db upgrade" in capsys.readouterr().err
