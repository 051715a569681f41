"""``/docs`` (Swagger UI) and ``/redoc`` served with their JavaScript and CSS from the service itself.

FastAPI's own pages load these from a CDN, so without internet ``/docs`` is a blank page. The assets come
from the pinned ``fastapi-offline`` package (Swagger UI 5.32.6 and ReDoc 2.5.3, ~2.8 MB installed), which
is the only part of it used: the pages are FastAPI's ``get_swagger_ui_html`` / ``get_redoc_html``.
Call ``install(app)`` on an app created with ``docs_url=None, redoc_url=None``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
STATIC_PREFIX = "/docs/static"
METHODS = ["GET", "HEAD"]  # as FastAPI's own docs pages answer (HEAD for uptime checkers)
REDOC_JS = "redoc.standalone.js"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", REDOC_JS, "favicon.png")
# ReDoc (every version, 3.0.1 included) draws the "API docs by Redocly" logo in its side menu from its CDN,
# with no option to turn it off. "data:," is no image: ReDoc drops the <img> on its error, keeping the link text.
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_IMAGE = b"data:,"


def install(app: FastAPI) -> None:
    """Adds /docs, the Swagger UI OAuth2 redirect page, /redoc and /docs/static/{name} (GET and HEAD)."""
    if app.openapi_url is None:
        raise ValueError("the docs pages need the OpenAPI schema; the app has openapi_url=None")
    # Fail at start-up, not with a blank page, if a package upgrade moves or renames a bundle.
    missing = [name for name in ASSETS if not (STATIC_DIR / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline no longer ships {', '.join(missing)} in {STATIC_DIR}")
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url

    def root_path(request: Request) -> str:
        # Behind a proxy that strips a prefix, the browser must ask for the prefixed URLs (as FastAPI does).
        return request.scope.get("root_path", "").rstrip("/")

    @app.api_route("/docs", methods=METHODS, include_in_schema=False)
    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{STATIC_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{STATIC_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{STATIC_PREFIX}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            # No validator badge: Swagger UI would fetch it from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    if oauth2_redirect_url:
        @app.api_route(oauth2_redirect_url, methods=METHODS, include_in_schema=False)
        async def swagger_ui_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()

    @app.api_route("/redoc", methods=METHODS, include_in_schema=False)
    async def redoc_html(request: Request) -> HTMLResponse:
        root = root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{STATIC_PREFIX}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{STATIC_PREFIX}/favicon.png",
            # FastAPI's default pulls Montserrat and Roboto from fonts.googleapis.com; system fonts do.
            with_google_fonts=False,
        )

    static = StaticFiles(directory=STATIC_DIR)

    # A route, not app.mount(): FastAPI's router records only routes in the scope, so the metrics
    # middleware would count a mount's requests as "unmatched"; this one is counted as /docs/static/{name}.
    @app.api_route(STATIC_PREFIX + "/{name}", methods=METHODS, include_in_schema=False)
    async def docs_asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            raise HTTPException(404, f"no such docs asset: {name}")
        if name == REDOC_JS:
            content, etag = redoc_js()
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"etag": etag})
            return Response(content, media_type="text/javascript", headers={"etag": etag})
        # StaticFiles sets the content type, ETag and Last-Modified, and answers revalidations with 304.
        return await static.get_response(name, request.scope)


@functools.cache  # read when first asked for: a process that never serves /redoc does not hold its 1 MB
def redoc_js() -> tuple[bytes, str]:
    """ReDoc's bundle with its CDN logo replaced, and its ETag."""
    content = (STATIC_DIR / REDOC_JS).read_bytes().replace(REDOC_CDN_LOGO, NO_IMAGE)
    return content, f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"'
