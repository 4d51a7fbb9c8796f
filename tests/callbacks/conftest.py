"""The console's fixtures (the real gateway app, a browser, an API tool) for the callback page."""

from tests.console.conftest import api, app, browser  # noqa: F401
