"""The fault suite: each test breaks one real part and checks that nothing is lost.

Tests record what they measured with the `fault_figures` fixture; the figures print as one
table at the end of the run, so CI's log shows them beside the pass/fail line.
"""

from __future__ import annotations

from collections.abc import Callable
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
