"""Pytest fixtures for the shared test servers; tests/conftest.py imports them.

Function-scoped: each test gets a fresh server with no captured traffic and no failure switch set.
Both start in a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .http_sink import HttpSink
from .smtp import SmtpCapture


@pytest.fixture
def smtp_server() -> Iterator[SmtpCapture]:
    """A running aiosmtpd server on a free local port (`.mail_settings()` sends to it)."""
    with SmtpCapture() as server:
        yield server


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    """A running HTTP server capturing POSTs (`.apprise_url()` is a json:// URL to it)."""
    with HttpSink() as sink:
        yield sink
