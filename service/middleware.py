"""Pure ASGI middleware (no per-request task or stream wrapping, to keep the hot path short)."""

from __future__ import annotations

import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import metrics
from service.access_log import AccessLogWriter
from service.errors import HTTPProblem, error_response, speaks_v2, v2_error

KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: at once from Content-Length, or as soon as a streamed
    body passes the limit, so an oversized body is never held in memory in full."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"request body is larger than {self.max_bytes} bytes (SENTIMENT_MAX_BODY_BYTES); "
                "send fewer or shorter reviews per request")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            status, content, headers = error_response(HTTPProblem(413, self._message(), ("body",)))
            if speaks_v2(scope):
                content = v2_error(content)
            return await JSONResponse(content, status, headers)(scope, receive, send)
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPProblem(413, self._message(), ("body",))
            return message

        await self.app(scope, limited_receive, send)


class AccessLog:
    """The HTTP metrics and, unless ``writer`` is None, one access-log line for every request."""

    def __init__(self, app: ASGIApp, writer: AccessLogWriter | None):
        self.app, self.writer = app, writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        scope.setdefault("state", {})
        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"  # bounded label values
            requests, latency = metrics.for_route(path, method, status)
            requests.inc()
            latency.observe(seconds)
            if self.writer is not None:
                self.writer.write({"method": scope["method"], "path": scope["path"], "status": status,
                                   "latency_ms": round(seconds * 1000, 3), **scope["state"].get("log", {})})
