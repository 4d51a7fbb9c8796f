"""The import-directory flow on the Prefect test server: from a file, from a real local HTTP
server (a CMDB or HR export), and a refusal that fails the run and changes nothing."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import Session, select

from itilflow.flows.directory import import_directory
from itilflow.models import ConfigurationItem, Engineer

pytestmark = pytest.mark.usefixtures("prefect_server")

PROJECT = Path(__file__).resolve().parents[2]
CIS_CSV = """\
name,kind,criticality,owner_group,depends_on
erp-app-01,server,high,applications,erp-db-01
erp-app-02,server,high,applications,erp-db-01;erp-app-01
"""
PEOPLE_CSV = "username,name,email,groups,skills\nma,Ma Li,ma@example.com,dba;network,database\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def export_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server serving a folder, as a CMDB's export URL would."""
    folder = tmp_path / "export"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def _cis(rt: Any) -> dict[str, list[str]]:
    with Session(rt.engine) as session:
        return {c.name: c.depends_on for c in session.exec(select(ConfigurationItem))}


def test_the_flow_imports_a_file_and_then_changes_nothing(rt: Any, tmp_path: Path) -> None:
    cis = tmp_path / "cis.csv"
    cis.write_text(CIS_CSV)

    first = import_directory(locations=[str(cis)])
    assert "cis: 2 created, 0 changed, 0 unchanged; 5 not in the file, left alone" in first
    assert _cis(rt)["erp-app-02"] == ["erp-db-01", "erp-app-01"]

    again = import_directory(locations=[str(cis)])
    assert "nothing to change" in again


def test_the_flow_imports_from_an_http_url(rt: Any, export_server: tuple[str, Path]) -> None:
    url, folder = export_server
    (folder / "people.csv").write_text(PEOPLE_CSV)
    (folder / "cis.csv").write_text(CIS_CSV)

    result = import_directory(locations=[f"{url}/people.csv", f"{url}/cis.csv"])

    assert "people: 1 created" in result and "cis: 2 created" in result
    with Session(rt.engine) as session:
        ma = session.get(Engineer, "ma")
        assert ma is not None and ma.memberships() == ["dba", "network"]


def test_an_invalid_row_fails_the_run_and_changes_nothing(
    rt: Any, export_server: tuple[str, Path]
) -> None:
    url, folder = export_server
    (folder / "cis.csv").write_text(CIS_CSV + "erp-app-03,server,urgent,applications,\n")
    before = _cis(rt)

    state = import_directory(locations=[f"{url}/cis.csv"], return_state=True)

    assert state.is_failed()
    with pytest.raises(Exception, match=rf"{url}/cis.csv line 4, column criticality"):
        state.result()
    assert _cis(rt) == before


def test_an_unreachable_url_fails_the_run(rt: Any, export_server: tuple[str, Path]) -> None:
    url, _ = export_server
    state = import_directory(locations=[f"{url}/missing.csv"], return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="cannot fetch it"):
        state.result()


def test_the_deployment_has_no_default_schedule() -> None:
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    [entry] = [d for d in deployments if d["name"] == "import-directory"]
    assert entry["entrypoint"] == "flows/directory.py:import_directory"
    assert not entry.get("schedules")
