"""POST /predict, the service's hot path, as a plain ASGI app.

FastAPI still routes to it and documents it (``app.py`` declares the operation, its parameters and
models), but its per-request machinery (Request objects, dependency solving, response validation)
is skipped: on two cores, where a single-review request costs about 400 µs of CPU in all (210 µs of
it onnxruntime's), every 10 µs of per-request Python is about 2.5 % of the throughput. The checks
are the same, in the same order, with the same error format (``service.errors``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from urllib.parse import parse_qsl

import numpy as np
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from service import metrics, security
from service.batching import Batcher, BatcherClosedError
from service.config import Settings
from service.errors import ServiceUnavailable, error_response, invalid
from service.repository import LoadedModel, UnknownModelError
from service.schemas import Agreement, ModelResult, Prediction, PredictRequest, PredictResponse

log = logging.getLogger("service")

# Tokenizing this many characters takes about 0.4 ms: beyond it, tokenize in a worker thread so one
# huge request cannot stall the event loop.
INLINE_TOKENIZE_CHARS = 20_000


def is_json(content_type: bytes | None) -> bool:
    media_type = (content_type or b"").split(b";", 1)[0].strip().lower()
    return media_type == b"application/json" or (media_type.startswith(b"application/")
                                                 and media_type.endswith(b"+json"))


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPException(400, "the client disconnected before the whole body arrived")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


@functools.lru_cache(maxsize=1024)  # clients repeat a handful of query strings
def model_names(query_string: bytes) -> tuple[str, ...]:
    """The ``model`` values of the query string, parsed as Starlette parses query strings."""
    return tuple(value for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
                 if key == "model")


def parse_body(raw: bytes) -> PredictRequest:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(("body",), f"request body is not valid UTF-8 JSON ({error.reason} at byte {error.start}); "
                      "send UTF-8 encoded JSON", None) from None
    try:
        return PredictRequest.model_validate_json(text)
    except ValidationError as error:
        raise RequestValidationError([{**item, "loc": ("body", *item["loc"])}
                                      for item in error.errors(include_url=False)]) from None


def check_limits(reviews: list[str], settings: Settings) -> None:
    if len(reviews) > settings.max_reviews:
        raise invalid(("body", "reviews"), f"too many reviews: {len(reviews)}, at most {settings.max_reviews} "
                      "per request (SENTIMENT_MAX_REVIEWS); split them over several requests", len(reviews))
    for position, review in enumerate(reviews):
        if len(review) > settings.max_review_chars:
            raise invalid(("body", "reviews", position),
                          f"review {position} has {len(review)} characters, at most {settings.max_review_chars} "
                          "are accepted (SENTIMENT_MAX_REVIEW_CHARS); shorten it", len(review))


def agreement(names: list[str], labels: list[list[str]]) -> Agreement:
    disagreements = [index for index, row in enumerate(zip(*labels)) if len(set(row)) > 1]
    return Agreement(models=names, agree=len(labels[0]) - len(disagreements), disagree=len(disagreements),
                     disagreements=disagreements)


def _unavailable(model: LoadedModel, message: str) -> ServiceUnavailable:
    metrics.for_model(model.name).unavailable.inc()
    return ServiceUnavailable(message)


async def _score(model: LoadedModel, batcher: Batcher, tokens: np.ndarray) -> list[float]:
    started = time.perf_counter()
    try:
        scores = (await batcher.predict(tokens)).tolist()
    except BatcherClosedError:
        raise _unavailable(model, f"model {model.name} is shutting down; retry on another instance") from None
    except TimeoutError:
        raise _unavailable(model, f"prediction took longer than {batcher.timeout} s "
                                  "(SENTIMENT_REQUEST_TIMEOUT_SECONDS); retry with fewer reviews") from None
    except Exception as error:
        log.exception("model %s failed", model.name)
        raise _unavailable(model, f"model {model.name} failed to score the reviews ({type(error).__name__}); "
                                  "other models are unaffected") from None
    if not all(0 <= score <= 1 for score in scores):  # NaN fails too
        log.error("model %s returned scores outside [0, 1]", model.name)
        raise _unavailable(model, f"model {model.name} returned invalid scores; other models are unaffected")
    model_metrics = metrics.for_model(model.name)
    model_metrics.latency.observe(time.perf_counter() - started)
    model_metrics.ok.inc()
    model_metrics.reviews.inc(len(tokens))
    return scores


class PredictEndpoint:
    """Scores the reviews of one request with one or several models (ASGI app)."""

    def __init__(self, settings: Settings, api_keys: list[bytes]):
        self.settings = settings
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._predict(scope, receive)
        except Exception as error:  # the errors raised on purpose get their status; others re-raise (500)
            status, content, headers = error_response(error)
            return await JSONResponse(content, status, headers)(scope, receive, send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def _predict(self, scope: Scope, receive: Receive) -> bytes:
        settings = self.settings
        headers = dict(scope["headers"])
        if self.api_keys:  # before reading the body: an anonymous caller learns nothing about it
            security.check_api_key(self.api_keys, headers.get(security.API_KEY_HEADER.lower().encode()))
        if not is_json(headers.get(b"content-type")):
            # Also keeps browsers' cross-site "simple" POSTs (form or text/plain bodies) out.
            raise HTTPException(415, "send the body as JSON with the header Content-Type: application/json")
        reviews = parse_body(await read_body(receive)).reviews
        check_limits(reviews, settings)
        serving = scope["app"].state.serving
        try:
            models = serving.repository.resolve(model_names(scope["query_string"]))
        except UnknownModelError as error:
            raise invalid(("query", "model"), str(error), error.unknown) from None
        logged = scope.setdefault("state", {})["log"] = {"models": [m.name for m in models], "reviews": len(reviews)}
        if settings.log_reviews:
            logged["texts"] = reviews
        metrics.REQUEST_REVIEWS.observe(len(reviews))

        # Models that share a tokenizer score the very same token batch.
        tokenizers = list({id(m.tokenizer): m.tokenizer for m in models}.values())
        if sum(map(len, reviews)) > INLINE_TOKENIZE_CHARS:
            encoded = await run_in_threadpool(lambda: [t.encode_batch(reviews) for t in tokenizers])
        else:
            encoded = [t.encode_batch(reviews) for t in tokenizers]
        tokens = {id(t): batch for t, batch in zip(tokenizers, encoded)}

        scoring = [_score(m, serving.batchers[m.name], tokens[id(m.tokenizer)]) for m in models]
        all_scores = [await scoring[0]] if len(scoring) == 1 else await asyncio.gather(*scoring)

        results = []
        for m, scores in zip(models, all_scores):
            predictions = [Prediction(score=score, label="positive" if score >= 0.5 else "negative")
                           for score in scores]
            results.append(ModelResult(model=m.name, predictions=predictions))
        summary = None
        if len(results) > 1:
            summary = agreement([r.model for r in results], [[p.label for p in r.predictions] for r in results])
        return PredictResponse(results=results, agreement=summary).model_dump_json().encode()
