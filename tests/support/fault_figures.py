"""The fault suite's figures (tests/faults: the `fault_figures` fixture), printed as one table at
the end of the run, so CI's log shows them beside the pass/fail line.

A plugin of the root conftest (pytest_plugins), not tests/faults/conftest.py: under pytest-xdist
the controller, which prints the summary, collects nothing and so never loads that conftest. A
row travels from the worker with the test's report (its user_properties).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

FIGURES_PROPERTY = "fault_figures"
_FIGURES: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture
def fault_figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """`fault_figures("smtp down 120 s", mails=40, delivered_once=40)` records one row."""

    def record(scenario: str, **figures: Any) -> None:
        # Plain values, so that xdist can send them with the report.
        row = {name: value if isinstance(value, int | float | str) else str(value)
               for name, value in figures.items()}  # fmt: skip
        request.node.user_properties.append((FIGURES_PROPERTY, (scenario, row)))

    return record


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect a test's rows once it is done (in the controller, from a worker's report)."""
    if report.when != "teardown":
        return
    for name, value in report.user_properties:
        if name == FIGURES_PROPERTY:
            scenario, figures = value
            _FIGURES.append((scenario, dict(figures)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault suite figures")
    width = max(len(scenario) for scenario, _ in _FIGURES)
    for scenario, figures in _FIGURES:
        values = ", ".join(f"{name}={value}" for name, value in figures.items())
        terminalreporter.write_line(f"{scenario.ljust(width)}  {values}")
