"""Error responses. Every error the service sends is ``{"detail": ...}``; validation errors use
FastAPI's list format. Shared by FastAPI's exception handlers and the /predict endpoint."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException  # FastAPI's subclasses it


class ServiceUnavailable(Exception):
    """A model failed, timed out or is shutting down: 503, worth retrying."""

    def __init__(self, message: str):
        self.message = message


def invalid(location: tuple, message: str, value) -> RequestValidationError:
    """A 422 in FastAPI's own error format, so every validation error has one shape."""
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message, "input": value}])


def validation_detail(error: RequestValidationError) -> list[dict]:
    """FastAPI's 422 detail without echoing the input back: it can be megabytes of review text, or a
    value such as Infinity that JSON cannot carry."""
    detail = []
    for item in error.errors():
        entry = {key: item[key] for key in ("type", "loc", "msg")}
        context = {key: value for key, value in item.get("ctx", {}).items() if isinstance(value, (str, int))}
        if context:  # e.g. the JSON decoder's reason, or a length limit
            entry["ctx"] = context
        detail.append(entry)
    return detail


def error_response(error: Exception) -> tuple[int, dict, dict[str, str]]:
    """Status, body and headers for an error this service raises on purpose; other errors re-raise."""
    if isinstance(error, RequestValidationError):
        return 422, {"detail": validation_detail(error)}, {}
    if isinstance(error, ServiceUnavailable):
        return 503, {"detail": error.message}, {"Retry-After": "1"}
    if isinstance(error, HTTPException):
        return error.status_code, {"detail": error.detail}, dict(error.headers or {})
    raise error


async def _as_json_response(request: Request, error: Exception) -> JSONResponse:
    status, content, headers = error_response(error)
    return JSONResponse(content, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Handlers for the routes FastAPI serves; HTTPException keeps FastAPI's own handler."""
    app.add_exception_handler(ServiceUnavailable, _as_json_response)
    app.add_exception_handler(RequestValidationError, _as_json_response)
