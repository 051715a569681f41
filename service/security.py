"""Request guards: optional API-key authentication, the JSON-only rule for bodies, and CORS.
Authentication and CORS are off unless configured.

Each guard is a plain check on raw header bytes (what the /predict fast path calls) wrapped in a
FastAPI dependency (what the routes declare, and what the OpenAPI page documents).
"""

from __future__ import annotations

import hmac

from fastapi import Depends, FastAPI, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import APIKeyHeader

from service.config import Settings
from service.errors import HTTPProblem

API_KEY_HEADER = "X-API-Key"
API_KEY_HEADER_BYTES = API_KEY_HEADER.lower().encode()
api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="Required only when the service is configured with API keys.")


def configure(app: FastAPI, settings: Settings) -> list:
    """Loads the API keys; returns the dependencies that protect a route (none without keys)."""
    app.state.api_keys = [key.encode() for key in settings.accepted_api_keys()]
    return [Depends(require_api_key)] if app.state.api_keys else []


def add_cors(app: FastAPI, settings: Settings) -> None:
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", API_KEY_HEADER])


async def require_api_key(request: Request, presented: str | None = Security(api_key_header)) -> None:
    # The header's raw bytes: Starlette decodes headers as latin-1.
    check_api_key(request.app.state.api_keys, presented.encode("latin-1") if presented else None)


def check_api_key(accepted: list[bytes], presented: bytes | None) -> None:
    """401 unless ``presented`` is one of the ``accepted`` keys (no keys: nothing to check)."""
    if not accepted:
        return
    candidate = presented or b""
    # Compare against every key, each in constant time, so timing reveals neither key nor position.
    matches = [hmac.compare_digest(candidate, key) for key in accepted]
    if not presented or not any(matches):
        raise HTTPProblem(401, f"missing or invalid API key; send a valid key in the {API_KEY_HEADER} header",
                          ("header", API_KEY_HEADER), headers={"WWW-Authenticate": "APIKey"})


async def require_json_body(request: Request) -> None:
    check_json_content_type(request.headers.get("content-type", "").encode("latin-1"))


def check_json_content_type(content_type: bytes | None) -> None:
    """415 unless the body is declared as JSON. Also keeps browsers' cross-site "simple" POSTs (form
    or text/plain bodies) out."""
    media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
    if not (media_type == b"application/json"
            or (media_type.startswith(b"application/") and media_type.endswith(b"+json"))):
        raise HTTPProblem(415, "send the body as JSON with the header Content-Type: application/json",
                          ("header", "Content-Type"))
