"""/docs (Swagger UI) and /redoc with their assets served by the gateway: many service desks
are air-gapped, and FastAPI's own pages load Swagger UI, ReDoc, a favicon and Google Fonts
from CDNs (a blank page without the internet).

The assets are those of the pinned `fastapi-offline` package (Swagger UI, Apache-2.0; ReDoc,
MIT; the package itself MIT), read from its folder: nothing vendored here goes stale unseen.
Like FastAPI's pages they are public, as /openapi.json is: they show the API, and every call
made from them still needs a bearer token.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

router = APIRouter()

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
# The only files served, with their types: no path from the request reaches the file system.
_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
TITLE = "itilflow gateway"
OPENAPI_URL = "/openapi.json"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI's default validator badge is an image from validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}
# ReDoc's menu shows Redocly's logo from their CDN (hidden when it fails to load): an empty
# source fails at once, without a request leaving the desk.
_REWRITES = {"redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"")]}
# The package's version is pinned: a day's caching saves the 1.5 MB on every visit.
_CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    )


@router.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", include_in_schema=False)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


@router.get(f"{ASSETS_URL}/{{name}}", include_in_schema=False)
def asset(name: str) -> Response:
    if name not in _FILES:
        raise HTTPException(status_code=404)
    return Response(_content(name), media_type=_FILES[name], headers=_CACHE)


@cache
def _content(name: str) -> bytes:
    content = (ASSETS / name).read_bytes()
    for old, new in _REWRITES.get(name, []):
        content = content.replace(old, new)
    return content
