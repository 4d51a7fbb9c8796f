"""Import the team's directory (groups, people, CIs) from files or URLs, as `itilflow import`.

Deployment `import-directory` (prefect.yaml) has no schedule: a fresh install has no file to
read. Run it from the UI with the locations of the files, or give it a schedule and its
parameters in prefect.yaml (e.g. every night from the CMDB's CSV export):

    schedules:
      - cron: "0 2 * * *"
        timezone: Asia/Shanghai
    parameters:
      locations: ["https://cmdb.example/export/cis.csv", "/srv/hr/people.csv"]

One invalid row fails the run with the file, line and column, and nothing is written. Records
missing from the files are left alone unless `deactivate_missing`.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow

from itilflow.tasks.directory.fetch_directory_files import fetch_directory_files
from itilflow.tasks.directory.import_directory_files import import_directory_files


@flow(name="import-directory")
def import_directory(
    locations: list[str],
    kind: Literal["groups", "people", "cis"] | None = None,
    dry_run: bool = False,
    deactivate_missing: bool = False,
) -> str:
    """Fetch each file (a path on the worker's host or an http(s) URL: .csv or .yaml), then
    create or update its records; returns what changed."""
    sources = fetch_directory_files(locations)
    return import_directory_files(
        sources, kind=kind, dry_run=dry_run, deactivate_missing=deactivate_missing
    )
