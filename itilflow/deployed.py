"""Whether `itilflow up` must register the deployments again, or the Prefect server already has
them as prefect.yaml and the code describe them.

`prefect deploy --all` took 10-80 s of every `up` (the longest stage on an existing data folder,
more under load), though a second start registers exactly what the first did. After a deploy,
`up` writes a digest of what it registered from (prefect.yaml, the project's Python sources:
flow signatures make the parameter schemas, the Prefect version, the server's URL) in the
data folder; the next `up` skips the deploy when the digest is the same and the server still has
the work pool and every deployment of prefect.yaml (a server whose database was reset has not).
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import version
from pathlib import Path

import httpx
import yaml

STAMP = "deployed.sha256"
# Source folders that are not part of what the deployments run.
NOT_DEPLOYED = {".venv", ".git", "tests", "bench", "docs", "node_modules", "__pycache__"}


def digest(project: Path, api_url: str) -> str:
    """What the deployments were registered from, as one hash."""
    h = hashlib.sha256(f"{version('prefect')}\n{api_url}\n".encode())
    h.update((project / "prefect.yaml").read_bytes())
    for path in sorted(_sources(project)):
        h.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _sources(project: Path) -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(project):
        subfolders[:] = [name for name in subfolders if name not in NOT_DEPLOYED]
        found += [Path(folder, name) for name in files if name.endswith(".py")]
    return found


def deployment_names(project: Path) -> set[str]:
    """The deployments prefect.yaml declares, by name."""
    config = yaml.safe_load((project / "prefect.yaml").read_text())
    return {entry["name"] for entry in config.get("deployments") or []}


def server_has_them(api: httpx.Client, pool: str, names: set[str]) -> bool:
    """The work pool and every named deployment are on the server."""
    if api.get(f"/work_pools/{pool}").status_code != 200:
        return False
    found = api.post("/deployments/filter", json={"deployments": {"name": {"any_": sorted(names)}}})
    if found.status_code != 200:
        return False
    return names <= {deployment["name"] for deployment in found.json()}


def up_to_date(stamp: Path, current: str, api: httpx.Client, pool: str, project: Path) -> bool:
    """The last deploy was made from `current` and the server still has what it registered."""
    if not stamp.exists() or stamp.read_text().strip() != current:
        return False
    try:
        return server_has_them(api, pool, deployment_names(project))
    except httpx.HTTPError:
        return False
