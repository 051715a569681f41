"""Error responses. Every error the service sends, 4xx or 5xx, has one shape, FastAPI's validation
format for all of them::

    {"detail": [{"type": "unknown_model", "loc": ["query", "model"], "msg": "unknown model 'x'; valid names: ..."}]}

``type`` is a stable machine-readable word, ``loc`` where the problem is (``body``, ``query``,
``header`` and the path within it; empty when it is no one field) and ``msg`` what to fix. Shared by
FastAPI's exception handlers and the /predict fast path.

The Open Inference Protocol's routes under /v2 (``service/routes/v2.py``) answer in that protocol's
shape instead, ``{"error": "<msg>"}`` (``v2_error``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException  # FastAPI's subclasses it
from starlette.routing import Match

from service.scoring import InvalidInput, ModelUnavailable, UnknownModelError

log = logging.getLogger("service")

# Where a scoring field comes from in an HTTP request.
FIELD_LOCATIONS = {"reviews": "body", "model": "query"}
TYPES_BY_STATUS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                   413: "too_large", 415: "unsupported_media_type", 500: "internal_error", 503: "unavailable"}


class HTTPProblem(HTTPException):
    """An HTTPException that also says where the problem is (``loc``)."""

    def __init__(self, status_code: int, message: str, loc: tuple = (), headers: dict[str, str] | None = None):
        super().__init__(status_code, message, headers)
        self.loc = loc


V2_PREFIX = "/v2"


def speaks_v2(scope: dict) -> bool:
    """Whether the request is for the Open Inference Protocol's paths, whose errors have its shape (``v2_error``)."""
    path, root_path = scope["path"], scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path):]
    return path == V2_PREFIX or path.startswith(V2_PREFIX + "/")


def v2_error(content: dict) -> dict:
    """A ``{"detail": [...]}`` body in the Open Inference Protocol's shape: ``{"error": "<msg>; <msg>"}``."""
    return {"error": "; ".join(item["msg"] for item in content["detail"])}


def client_disconnected() -> HTTPProblem:
    return HTTPProblem(400, "the client disconnected before the whole body arrived", ("body",))


def problem(error_type: str, loc: tuple | list, message: str) -> dict:
    return {"type": error_type, "loc": list(loc), "msg": message}


def invalid_body(message: str) -> RequestValidationError:
    """A 422 for a body that cannot be read at all, in FastAPI's own validation format."""
    return RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": message, "input": None}])


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
    if isinstance(error, InvalidInput):
        loc = (FIELD_LOCATIONS.get(str(error.field[0]), "body"), *error.field)
        error_type = "unknown_model" if isinstance(error, UnknownModelError) else "value_error"
        return 422, {"detail": [problem(error_type, loc, error.message)]}, {}
    if isinstance(error, ModelUnavailable):
        return 503, {"detail": [problem("model_unavailable", ("model", error.model), error.message)]}, \
            {"Retry-After": "1"}
    if isinstance(error, HTTPException):
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        error_type = TYPES_BY_STATUS.get(error.status_code, "http_error")
        return error.status_code, {"detail": [problem(error_type, getattr(error, "loc", ()), message)]}, \
            dict(error.headers or {})
    raise error


def _answer(request: Request, status: int, content: dict, headers: dict[str, str]) -> JSONResponse:
    """The error in the one shape, or under /v2 in the Open Inference Protocol's (an unknown path or method there)."""
    return JSONResponse(v2_error(content) if speaks_v2(request.scope) else content, status_code=status,
                        headers=headers)


async def _as_json_response(request: Request, error: Exception) -> JSONResponse:
    status, content, headers = error_response(error)
    return _answer(request, status, content, headers)


def internal_error() -> tuple[int, dict, dict[str, str]]:
    """Status, body and headers for an error nobody raised on purpose (the log has the details)."""
    return 500, {"detail": [problem("internal_error", (), "internal error; the service log has the details")]}, {}


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    status, content, headers = internal_error()
    return _answer(request, status, content, headers)


async def _not_found(request: Request, error: Exception) -> JSONResponse:
    """A 404 that names the route a trailing slash missed (``POST /predict/``)."""
    status, content, headers = error_response(error)
    path = request.scope["path"]
    if len(path) > 1 and path.endswith("/"):
        without = {**request.scope, "path": path.rstrip("/")}
        if any(route.matches(without)[0] is not Match.NONE for route in request.app.router.routes):
            content["detail"][0]["msg"] = (f"nothing is served at {path}; did you mean {without['path']} "
                                           "(without the trailing slash)?")
    return _answer(request, status, content, headers)


def install(app: FastAPI) -> None:
    """Handlers that give the routes FastAPI serves the same error shape as the fast path."""
    for kind in (RequestValidationError, InvalidInput, ModelUnavailable, HTTPException):
        app.add_exception_handler(kind, _as_json_response)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(Exception, _internal_error)
