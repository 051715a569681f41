"""Typed dependency aliases: what a route handler may ask FastAPI for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from service.config import Settings
from service.errors import client_disconnected
from service.scoring import ScoringCore


def get_core(request: Request) -> ScoringCore:
    return request.app.state.core


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_body(request: Request) -> bytes:
    """The raw body, which the routes parse themselves (the /predict fast path reads it its own way)."""
    try:
        return await request.body()
    except ClientDisconnect:
        raise client_disconnected() from None


BodyDep = Annotated[bytes, Depends(get_body)]
CoreDep = Annotated[ScoringCore, Depends(get_core)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
