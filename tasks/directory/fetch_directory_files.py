from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from prefect import task

from itilflow.services.directory_checks import DirectoryError, Problem
from itilflow.services.directory_files import Source

# What a URL without a .csv/.yaml ending is read as, by its Content-Type.
CONTENT_TYPES = {"text/csv": ".csv", "application/yaml": ".yaml", "text/yaml": ".yaml"}


@task(name="fetch-directory-files", retries=2, retry_delay_seconds=2)
def fetch_directory_files(locations: list[str]) -> list[Source]:
    """Read each file: a path on the worker's host, or an http(s) URL (a CMDB or HR export)."""
    return [_fetch(location) for location in locations]


def _fetch(location: str) -> Source:
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return Source.from_path(Path(location))
    try:
        response = httpx.get(location, timeout=60, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DirectoryError([Problem(location, None, f"cannot fetch it: {exc}")]) from exc
    suffix = Path(parts.path).suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        content_type = response.headers.get("content-type", "").split(";")[0].strip()
        suffix = CONTENT_TYPES.get(content_type, suffix)
    return Source(location, response.text, suffix)
