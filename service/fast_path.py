"""The /predict fast path: the route's own handler logic, reached past FastAPI's per-request layers.

On two cores a single-review request costs about 400 µs of CPU in all, 210 µs of it onnxruntime's,
so every 10 µs of per-request Python is about 2.5 % of the throughput. With ``SENTIMENT_FAST_PATH``
on (the default), ``POST /predict`` takes the short way::

    uvicorn ─▶ DirectRoute ─┬─ POST /predict ─▶ CORS ─▶ AccessLog ─▶ BodySizeLimit ─▶ FastPredict
                            │                   (the user middleware, rebuilt around the endpoint)
                            │                                      ─▶ predict_json ─▶ ScoringCore
                            └─ anything else ─▶ FastAPI: ServerErrorMiddleware ─▶ CORS ─▶ AccessLog
                                   ─▶ BodySizeLimit ─▶ ExceptionMiddleware ─▶ router ─▶ dependencies
                                   ─▶ route handler ─▶ predict_json ─▶ ScoringCore

The fast way skips FastAPI's error, telemetry and exception layers, its router, dependency solving
and Request objects. What the route declares still holds: ``FastPredict`` runs the route's guards
(each dependency maps to the plain check it wraps, in the declared order), parses the ``model`` query
parameter as Starlette does, and calls the same ``predict_json`` as the route. A dependency or query
parameter it does not know stops start-up, so adding one to the route cannot be silently skipped.
With ``SENTIMENT_FAST_PATH=false`` the router is included as usual and every request takes FastAPI's
way (to check a FastAPI upgrade against the plain router); the tests run the same requests both ways
and compare the answers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, params
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service import security
from service.errors import client_disconnected, error_response, internal_error
from service.routes.dependencies import get_body, get_core, get_settings
from service.routes.predict import predict_json

log = logging.getLogger("service")

# The query parameters and dependencies of the route that FastPredict knows how to honour.
KNOWN_QUERY_PARAMETERS = {"model"}
KNOWN_DEPENDENCIES = {security.require_api_key, security.require_json_body, get_body, get_core, get_settings}


class FastPathError(RuntimeError):
    """The route declares something the fast path cannot honour."""


@functools.lru_cache(maxsize=1024)  # clients repeat a handful of query strings
def model_names(query_string: bytes) -> tuple[str, ...]:
    """The ``model`` values of the query string, parsed as Starlette parses query strings."""
    return tuple(value for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                 if key == "model")


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise client_disconnected()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _guards(route: APIRoute, included_with: Sequence[params.Depends]) -> list[Callable]:
    """The guards of the route and of the dependencies its router was included with, in the order
    FastAPI runs them; FastPathError for anything else."""
    dependant = route.dependant
    unknown_query = {param.name for param in dependant.query_params} - KNOWN_QUERY_PARAMETERS
    extra_params = dependant.header_params + dependant.cookie_params + dependant.path_params + dependant.body_params
    if unknown_query or extra_params:
        names = sorted(unknown_query | {param.name for param in extra_params})
        raise FastPathError(f"the fast path does not read parameter(s) {', '.join(names)} of {route.path}; "
                            "teach service/fast_path.py to, or set SENTIMENT_FAST_PATH=false")
    guards = []
    for call in [*(d.dependency for d in included_with), *(d.call for d in dependant.dependencies)]:
        if call is None or call not in KNOWN_DEPENDENCIES:
            raise FastPathError(f"the fast path cannot run dependency {call!r} of {route.path}; teach "
                                "service/fast_path.py to, or set SENTIMENT_FAST_PATH=false")
        if call is security.require_api_key:
            guards.append(lambda app, headers: security.check_api_key(
                app.state.api_keys, headers.get(security.API_KEY_HEADER_BYTES)))
        elif call is security.require_json_body:
            guards.append(lambda app, headers: security.check_json_content_type(headers.get(b"content-type")))
    return guards


class FastPredict:
    """``POST /predict`` as a plain ASGI app: the route's guards, then ``predict_json``."""

    def __init__(self, route: APIRoute, included_with: Sequence[params.Depends] = ()):
        self.route = route
        self.guards = _guards(route, included_with)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        try:
            headers = dict(reversed(scope["headers"]))  # the first of repeated headers, as Starlette reads them
            for guard in self.guards:  # before reading the body: an anonymous caller learns nothing about it
                guard(app, headers)
            body = await read_body(receive)
            payload = await predict_json(app.state.core, app.state.settings, body,
                                         model_names(scope["query_string"]), scope)
        except Exception as error:  # the errors raised on purpose get their status; others a logged JSON 500
            try:
                status, content, headers = error_response(error)
            except Exception:
                log.exception("unhandled error on POST %s", scope["path"])
                status, content, headers = internal_error()
            return await JSONResponse(content, status, headers)(scope, receive, send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]})
        await send({"type": "http.response.body", "body": payload})


class DirectRoute:
    """Sends requests for one route's exact path and method straight to ``endpoint``, past the rest of
    the stack ``app``. Requests it does not recognise (other methods, a root path) take the usual
    way, which leads to the same handler logic."""

    def __init__(self, app: ASGIApp, route: APIRoute, endpoint: ASGIApp):
        self.app, self.route, self.endpoint = app, route, endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.route.path and scope["method"] in self.route.methods:
            scope["route"] = self.route
            return await self.endpoint(scope, receive, send)
        await self.app(scope, receive, send)


class SentimentAPI(FastAPI):
    """FastAPI, plus ``fast_routes``: routes served by ``FastPredict`` inside the user middleware alone."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fast_routes: list[tuple[APIRoute, tuple[params.Depends, ...]]] = []

    def include_fast_router(self, router: APIRouter, dependencies: Sequence[params.Depends] = ()) -> None:
        """``include_router(router, dependencies=...)``, with the router's one route also served by the
        fast path; FastPathError now, at start-up, if its declarations cannot be honoured."""
        self.include_router(router, dependencies=list(dependencies))
        (route,) = router.routes
        FastPredict(route, dependencies)  # checks the declarations now rather than on the first request
        self.fast_routes.append((route, tuple(dependencies)))

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        for route, dependencies in self.fast_routes:
            endpoint: ASGIApp = FastPredict(route, dependencies)
            for middleware in reversed(self.user_middleware):  # the list is outermost first
                endpoint = middleware.cls(endpoint, *middleware.args, **middleware.kwargs)
            stack = DirectRoute(stack, route, endpoint)
        return stack
