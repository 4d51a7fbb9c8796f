"""The gateway's HTML pages: templates in gateway/pages/, rendered in the one environment the
notifications and reports use too (autoescaped: every value from a record or a form is text)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment

from itilflow.notifications.templating import template_environment

PAGES_DIR = Path(__file__).parent / "pages"


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    return template_environment(PAGES_DIR)


def render_page(template: str, *, status_code: int = 200, **values: Any) -> HTMLResponse:
    """`template` (e.g. "survey.html") rendered with `values`; every name it reads must be
    given (an undefined one is an error, not an empty string)."""
    html = _environment().get_template(template).render(**values)
    return HTMLResponse(html, status_code=status_code)


def render_text(template: str, **values: Any) -> str:
    """`template` rendered with `values`, as a string (a mail's HTML part)."""
    return _environment().get_template(template).render(**values)
