"""The fault suite: each test breaks one real part and checks that nothing is lost.

Tests record what they measured with the `fault_figures` fixture (tests/support/fault_figures.py);
the figures print as one table at the end of the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def client(rt: Any) -> Iterator[Any]:
    """The gateway on the test's database, with the bearer token set; change runs are recorded
    (RecordingChangeEngine), not started: starting one would bring up a Prefect server."""
    from fastapi.testclient import TestClient

    from itilflow.gateway.app import create_app

    from .gateway_support import RecordingChangeEngine, bearer

    app = create_app(rt.settings, rt.policies, change_engine=RecordingChangeEngine())
    with TestClient(app, headers=bearer(rt)) as test_client:
        yield test_client
