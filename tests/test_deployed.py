"""`itilflow up` registers the deployments again only when prefect.yaml or the code changed, or
the Prefect server lost them (itilflow/deployed.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from itilflow.deployed import deployment_names, digest, up_to_date

PROJECT = Path(__file__).resolve().parent.parent


def project_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    (copy / "flows").mkdir(parents=True)
    shutil.copy(PROJECT / "prefect.yaml", copy)
    (copy / "flows" / "incident.py").write_text("def open_incidents(ids: list[int]): ...\n")
    (copy / "tests").mkdir()
    (copy / "tests" / "test_x.py").write_text("x = 1\n")
    return copy


def server(pool: bool = True, missing: str | None = None) -> httpx.Client:
    names = deployment_names(PROJECT) - ({missing} if missing else set())

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/work_pools/itilflow":
            return httpx.Response(200 if pool else 404, json={})
        if request.url.path == "/api/deployments/filter":
            return httpx.Response(200, json=[{"name": name} for name in sorted(names)])
        return httpx.Response(404)

    return httpx.Client(base_url="http://prefect/api", transport=httpx.MockTransport(answer))


def test_the_same_sources_on_a_server_with_everything_skip_the_deploy(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    stamp = tmp_path / "deployed.sha256"
    current = digest(project, "http://prefect/api")
    stamp.write_text(current + "\n")
    assert up_to_date(stamp, current, server(), "itilflow", project)


def test_a_change_to_prefect_yaml_or_a_flow_deploys_again_a_test_does_not(tmp_path: Path):
    project = project_copy(tmp_path)
    before = digest(project, "http://prefect/api")
    (project / "tests" / "test_x.py").write_text("x = 2\n")
    assert digest(project, "http://prefect/api") == before
    assert digest(project, "http://other/api") != before
    (project / "flows" / "incident.py").write_text("def open_incidents(ids: list[str]): ...\n")
    changed_flow = digest(project, "http://prefect/api")
    assert changed_flow != before
    with (project / "prefect.yaml").open("a") as config:
        config.write("\n# a comment is a change too\n")
    assert digest(project, "http://prefect/api") != changed_flow


def test_no_stamp_another_stamp_or_a_server_that_lost_them_deploys_again(tmp_path: Path):
    project = project_copy(tmp_path)
    stamp = tmp_path / "deployed.sha256"
    current = digest(project, "http://prefect/api")
    assert not up_to_date(stamp, current, server(), "itilflow", project)
    stamp.write_text("0" * 64 + "\n")
    assert not up_to_date(stamp, current, server(), "itilflow", project)
    stamp.write_text(current + "\n")
    assert not up_to_date(stamp, current, server(pool=False), "itilflow", project)
    assert not up_to_date(stamp, current, server(missing="recover-change"), "itilflow", project)

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    down = httpx.Client(base_url="http://prefect/api", transport=httpx.MockTransport(unreachable))
    assert not up_to_date(stamp, current, down, "itilflow", project)
