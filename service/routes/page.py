"""``GET /``: a page to try the models and compare them, served with its files by the service itself.

Plain HTML, CSS and JavaScript from ``service/static`` (no build step, no CDN, no framework), read from
the package when first asked for and kept in memory: nothing is written at run time, so it works from
the read-only container and offline. The page calls the service's own /models, /predict, /explain and
/readyz, with URLs relative to a ``<base>`` that names the proxy prefix (``root_path``), as /docs does.
The page and its files are public, like /docs; the API routes it calls keep their API keys.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE = "index.html"
# The page's files and their content types (set here, not guessed: the slim image has no /etc/mime.types).
ASSETS = {
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "samples.json": "application/json",
}
METHODS = ["GET", "HEAD"]
# The browser may load and contact this service alone; what the page builds is styled through the CSSOM
# (element.style), which style-src does not restrict. The favicon is an empty data: URL (no /favicon.ico).
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; base-uri 'self'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"cache-control": "no-cache", "x-content-type-options": "nosniff"}

missing = [name for name in (PAGE, *ASSETS) if not (STATIC_DIR / name).is_file()]
if missing:  # fail at start-up, not with a broken page
    raise RuntimeError(f"the page's files are missing from {STATIC_DIR}: {', '.join(missing)}")

router = APIRouter(include_in_schema=False)


@functools.cache
def read(name: str) -> bytes:
    return (STATIC_DIR / name).read_bytes()


@functools.lru_cache(maxsize=16)
def render_page(root: str, max_review_chars: int, api_keys: bool) -> tuple[bytes, str]:
    """The page with what it needs to know of this service filled in, and its ETag."""
    html = read(PAGE).decode("utf-8")
    for placeholder, value in (("{{root}}", root), ("{{max_review_chars}}", str(max_review_chars)),
                               ("{{api_keys}}", "required" if api_keys else "none")):
        html = html.replace(placeholder, _attribute(value))
    content = html.encode("utf-8")
    return content, etag(content)


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    content = read(name)
    return content, etag(content)


def etag(content: bytes) -> str:
    return f'"{hashlib.md5(content, usedforsecurity=False).hexdigest()}"'


def _attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _answer(request: Request, content: bytes, tag: str, media_type: str, headers: dict[str, str]) -> Response:
    headers = {**HEADERS, **headers, "etag": tag}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


@router.api_route("/", methods=METHODS)
async def page(request: Request) -> Response:
    # Behind a proxy that strips a prefix, the page's relative URLs must resolve under that prefix.
    root = request.scope.get("root_path", "").rstrip("/")
    content, tag = render_page(root, request.app.state.settings.max_review_chars, bool(request.app.state.api_keys))
    return _answer(request, content, tag, "text/html; charset=utf-8",
                   {"content-security-policy": CONTENT_SECURITY_POLICY, "referrer-policy": "no-referrer"})


# A route, not app.mount(), so that the metrics name it (/static/{name}), as /docs/static/{name}.
@router.api_route("/static/{name}", methods=METHODS)
async def static_file(name: str, request: Request) -> Response:
    if name not in ASSETS:
        raise HTTPException(404, f"no such page file: {name}")
    content, tag = asset(name)
    return _answer(request, content, tag, ASSETS[name], {})
