"""The fault suite: each test breaks one real part and checks that nothing is lost.

Tests record what they measured with the `fault_figures` fixture; the figures print as one
table at the end of the run, so CI's log shows them beside the pass/fail line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def fault_figures() -> Callable[..., None]:
    """`fault_figures("smtp down 120 s", mails=40, delivered_once=40)` records one row."""

    def record(scenario: str, **figures: Any) -> None:
        _FIGURES.append((scenario, figures))

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault suite figures")
    width = max(len(scenario) for scenario, _ in _FIGURES)
    for scenario, figures in _FIGURES:
        values = ", ".join(f"{name}={value}" for name, value in figures.items())
        terminalreporter.write_line(f"{scenario.ljust(width)}  {values}")


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
