"""``POST /explain``: which words of each review pushed one model's score which way.

A thin shell over the scoring core, like ``/predict``: the same body, errors, limits (its own review
count, ``SENTIMENT_EXPLAIN_MAX_REVIEWS``), API keys, metrics and access log. It takes FastAPI's router
(not the /predict fast path): an explanation costs a model call per word, the HTTP layers are noise.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic_core import to_json

from service.config import Settings
from service.routes.dependencies import BodyDep, CoreDep, SettingsDep
from service.routes.predict import ERRORS, parse_body
from service.schemas import ExplainRequest, ExplainResponse
from service.scoring import ExplainResult, ScoringCore
from service.security import require_json_body

router = APIRouter(tags=["inference"])

MODEL_QUERY = Query(description="The one model to explain with. Default: the model with the best robustness "
                                "score (models/REPORT.md), or SENTIMENT_DEFAULT_MODEL.")
BODY_OPENAPI = {"requestBody": {
    "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExplainRequest"}}}}}
# Beyond this many words in a response, render it in a worker thread: a response of 16 long reviews holds
# hundreds of thousands of words (truncated ones included).
INLINE_RENDER_TOKENS = 5_000


def render(result: ExplainResult) -> bytes:
    """The JSON of ``ExplainResponse`` for ``result``, from plain dicts (a test compares the two)."""
    return to_json({"model": result.model, "version": result.version, "method": result.method, "explanations": [
        {"score": e.score, "label": e.label, "words": e.words_read, "known_words": e.known_words,
         "truncated": e.truncated, "warnings": e.warnings, "logit": e.logit, "bias": e.bias, "tokens": [
             {"text": t.text, "start": t.start, "end": t.end, "contribution": t.contribution, "truncated": t.truncated}
             for t in e.tokens]}
        for e in result.explanations]})


async def explain_json(core: ScoringCore, settings: Settings, body: bytes, model: str | None, scope: dict) -> bytes:
    """The response body for one /explain request; what the access log should say goes into ``scope``."""
    reviews = parse_body(body, ExplainRequest).reviews
    core.check_explain(reviews)
    resolved = core.resolve_one(model)
    logged = scope.setdefault("state", {})["log"] = {"models": [resolved.name], "reviews": len(reviews)}
    if settings.log_reviews:
        logged["texts"] = reviews
    result = await core.explain_with(resolved, reviews)
    if sum(len(e.tokens) for e in result.explanations) > INLINE_RENDER_TOKENS:
        return await asyncio.to_thread(render, result)
    return render(result)


@router.post("/explain", response_model=ExplainResponse, responses=ERRORS, operation_id="explain",
             summary="Explain one model's scores: each word's contribution", dependencies=[Depends(require_json_body)],
             openapi_extra=BODY_OPENAPI)
async def explain(request: Request, body: BodyDep, core: CoreDep, settings: SettingsDep,
                  model: Annotated[list[str] | None, MODEL_QUERY] = None) -> Response:
    # Every value counts, so ?model=a&model=b is refused like ?model=a,b rather than answering for one of them.
    requested = None if model is None else ",".join(model)
    return Response(await explain_json(core, settings, body, requested, request.scope),
                    media_type="application/json")
