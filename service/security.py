"""Optional API-key authentication and CORS. Both are off unless configured."""

from __future__ import annotations

import hmac

from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import APIKeyHeader

from service.config import Settings

API_KEY_HEADER = "X-API-Key"
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
    """401 unless ``presented`` is one of the ``accepted`` keys."""
    candidate = presented or b""
    # Compare against every key, each in constant time, so timing reveals neither key nor position.
    matches = [hmac.compare_digest(candidate, key) for key in accepted]
    if not presented or not any(matches):
        raise HTTPException(401, f"missing or invalid API key; send a valid key in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": "APIKey"})
