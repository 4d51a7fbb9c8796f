"""Sample engineers, CIs and incidents, so a new user sees everything working in minutes."""

from __future__ import annotations

from importlib import resources

import httpx
import yaml

from itilflow import clock
from itilflow.models import get_engine, session_scope
from itilflow.models.migrations import check_database
from itilflow.services.directory import Record, save_records
from itilflow.services.principals import grant_role
from itilflow.settings import Settings

# data.yaml's sections and the directory's kinds.
DEMO_SECTIONS = {"groups": "groups", "engineers": "people", "configuration_items": "cis"}
# The grantor the demo's role grants name (`itilflow role list` shows it).
DEMO_GRANTOR = "demo"
# data.yaml's `roles` lists subjects under these keys; the grants' subject kinds.
GRANT_KINDS = {"people": "person", "groups": "group"}


def demo_data() -> dict:
    return yaml.safe_load(resources.files(__package__).joinpath("data.yaml").read_text("utf-8"))


def load_people(settings: Settings) -> None:
    data = demo_data()
    assert settings.database_url is not None
    engine = get_engine(settings.database_url)
    check_database(engine)
    # The same path as `itilflow import`: a second load changes nothing.
    records = [
        Record(kind, values, where=f"demo data.yaml {section}")
        for section, kind in DEMO_SECTIONS.items()
        for values in data[section]
    ]
    with session_scope(engine) as session:
        save_records(session, records)


def grant_demo_roles(settings: Settings) -> None:
    """Give the demo people data.yaml's roles (again: the grants already there). Not part of
    load_people: the tests' directory is the demo's people without roles, so that each test
    grants the roles its case needs."""
    assert settings.database_url is not None
    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        for role, subjects in demo_data()["roles"].items():
            for key, subject_kind in GRANT_KINDS.items():
                for subject in subjects.get(key, []):
                    grant_role(
                        session=session,
                        role=role,
                        subject_kind=subject_kind,
                        subject=subject,
                        granted_by=DEMO_GRANTOR,
                    )


def load_demo(settings: Settings) -> str:
    """Load the sample team and open the sample incidents through the gateway's API."""
    settings.require_secrets()
    assert settings.api_token is not None
    load_people(settings)
    grant_demo_roles(settings)
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
    lines = []
    for index, incident in enumerate(demo_data()["incidents"], start=1):
        response = httpx.post(
            f"{settings.public_url}/api/incidents",
            json=incident,
            # The same key on every run: a second `up --demo` opens nothing twice.
            headers={**headers, "Idempotency-Key": f"demo-{index}"},
            timeout=10,
        )
        response.raise_for_status()
        ref = response.json()
        lines.append(f"  {ref['number']}  {incident['title']}  {ref['url']}")
    with httpx.Client(base_url=settings.public_url or "", headers=headers, timeout=30) as api:
        for change in demo_data().get("changes", []):
            # Only once: a second `up --demo` finds it already there.
            if api.get("/api/changes/1").status_code == 200:
                break
            # Planned to start now, as asked: without a planned start a change waits for the
            # next maintenance window, and the demo's would wait for tonight's.
            planned = {"planned_start": clock.now().isoformat()}
            response = api.post("/api/changes", json=planned | change)
            response.raise_for_status()
            ref = response.json()
            lines.append(
                f"  {ref['number']}  {change['title']}  (approval mails in the inbox; "
                "the link's button mails the approver a code, there too)"
            )
    return "demo incidents and changes:\n" + "\n".join(lines)
