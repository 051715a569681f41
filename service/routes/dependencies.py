"""Typed dependency aliases: what a route handler may ask FastAPI for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.scoring import ScoringCore


def get_core(request: Request) -> ScoringCore:
    return request.app.state.core


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


CoreDep = Annotated[ScoringCore, Depends(get_core)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
