"""The CSRF field of the gateway's forms, as a browser would send it back."""

from __future__ import annotations

import re
from typing import Any

CSRF_FIELD = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    """The CSRF field of the first form on the page ("" when the page has no form)."""
    match = CSRF_FIELD.search(html)
    return match.group(1) if match else ""


def session_cookie(client: Any) -> str | None:
    """The browser session cookie a client (TestClient or httpx.Client) holds, or None."""
    return next((c.value for c in client.cookies.jar if c.name == "itilflow_session"), None)


def post_form(client: Any, url: str, data: dict[str, str], **kwargs: Any) -> Any:
    """POST `data` to a form page as a browser does: open the page first (which sets the CSRF
    cookie on the client) and send its CSRF field along. A page without a form (a used or
    broken link) gives no field; the POST then goes without one."""
    token = csrf_of(client.get(url.split("?")[0]).text)
    return client.post(url, data={**data, "csrf": token} if token else data, **kwargs)
