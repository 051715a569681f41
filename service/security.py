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
    """Adds CORS when configured; returns the dependencies that protect a route (none without keys)."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", API_KEY_HEADER])
    app.state.api_keys = [key.encode() for key in settings.accepted_api_keys()]
    return [Depends(require_api_key)] if app.state.api_keys else []


async def require_api_key(request: Request, presented: str | None = Security(api_key_header)) -> None:
    accepted: list[bytes] = request.app.state.api_keys
    candidate = (presented or "").encode("latin-1")  # the header's raw bytes (Starlette decodes as latin-1)
    # Compare against every key, each in constant time, so timing reveals neither key nor position.
    matches = [hmac.compare_digest(candidate, key) for key in accepted]
    if not presented or not any(matches):
        raise HTTPException(401, f"missing or invalid API key; send a valid key in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": "APIKey"})
