"""A fresh database per test, the known-answer history, and policies to report with."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from itilflow.models import get_engine
from itilflow.policies import Policies, load_policies
from tests.reports.dataset import load_history


@pytest.fixture
def engine(database_url: str) -> Engine:
    return get_engine(database_url)  # the fixture made its schema


@pytest.fixture
def history(engine: Engine) -> dict[str, int]:
    return load_history(engine)


@pytest.fixture(scope="session")
def policies() -> Policies:
    return load_policies()


@pytest.fixture
def strict_sla(tmp_path: Path) -> Path:
    """An sla.yaml like the default one, but P1 must be answered in 5m and fixed in 1h."""
    from itilflow.policies import default_policy_dir

    text = default_policy_dir().joinpath("sla.yaml").read_text(encoding="utf-8")
    old = "P1: {response: 30m, resolution: 4h, calendar: always}"
    assert old in text
    path = tmp_path / "strict" / "sla.yaml"
    path.parent.mkdir()
    path.write_text(text.replace(old, "P1: {response: 5m, resolution: 1h, calendar: always}"))
    return path
