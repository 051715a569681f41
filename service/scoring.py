"""The scoring core (what KServe and MLServer call the data plane): reviews and model names in, typed
results out. It knows nothing of HTTP.

Every way into the service calls it, so each rule lives here once: the request limits, which models
a request names (default, ``all``, repeated or comma-separated names), tokenizing once per
vocabulary, scoring through each model's batcher, checking what the model returned, the label
threshold, the agreement summary and the per-model metrics::

    reviews ─▶ check limits ─▶ resolve models ─▶ tokenize (once per vocabulary) ─▶ batcher ─▶ session
                                                                                                 │
    ScoringResult ◀── labels, agreement ◀── check scores ◀───────────────────────────────────────┘

Its errors say what is wrong with which field (``InvalidInput``) or which model could not answer
(``ModelUnavailable``); each way in renders them in its own protocol.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from artifacts.tokenizer import EncodedBatch
from service import metrics
from service.batching import Batcher, BatcherClosedError
from service.config import Settings
from service.repository import LoadedModel, ModelLoadError, ModelRepository

log = logging.getLogger("service.scoring")

Label = Literal["positive", "negative"]
POSITIVE_THRESHOLD = 0.5  # a score at or above it is labelled positive
ALL_MODELS = "all"
# Tokenizing this many characters takes about 0.4 ms: beyond it, tokenize in a worker thread so one
# huge request cannot stall the event loop.
INLINE_TOKENIZE_CHARS = 20_000
RESOLVED_CACHE_SIZE = 1024


def label_of(score: float) -> Label:
    return "positive" if score >= POSITIVE_THRESHOLD else "negative"


class ScoringError(Exception):
    """A request the core cannot answer; the message says why and what to do."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ScoringError):
    """The caller sent something to fix: ``field`` names it, e.g. ``("reviews", 3)`` or ``("model",)``."""

    def __init__(self, field: tuple[str | int, ...], message: str, value: object = None):
        super().__init__(message)
        self.field, self.value = field, value


class UnknownModelError(InvalidInput):
    def __init__(self, unknown: list[str], valid: list[str]):
        super().__init__(("model",), f"unknown model {', '.join(map(repr, unknown))}; valid names: "
                                     f"{', '.join(valid)} (or '{ALL_MODELS}')", unknown)
        self.unknown, self.valid = unknown, valid


class ModelUnavailable(ScoringError):
    """A model failed, timed out, returned invalid scores or is shutting down; worth retrying."""

    def __init__(self, model: str, message: str):
        super().__init__(message)
        self.model = model


@dataclass(frozen=True, slots=True)
class Limits:
    max_reviews: int
    max_review_chars: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_reviews, settings.max_review_chars)


@dataclass(frozen=True, slots=True)
class ReviewScore:
    score: float  # probability that the review is positive
    label: Label
    words_read: int  # words in the model's input (at most max_len)
    known_words: int  # of those, the words in the model's vocabulary
    truncated: bool  # words before the last max_len were left out


@dataclass(frozen=True, slots=True)
class ModelScores:
    """One model's answer for every review of a request, in input order."""

    model: str
    version: str
    scores: list[float]
    labels: list[Label]
    encoded: EncodedBatch  # what the model read, shared by the models with the same tokenizer

    def reviews(self) -> list[ReviewScore]:
        """Per review: score, label and how the review was read (computed on demand)."""
        columns = (self.encoded.words_read().tolist(), self.encoded.known_words().tolist(),
                   self.encoded.truncated.tolist())
        return [ReviewScore(*row) for row in zip(self.scores, self.labels, *columns, strict=True)]


@dataclass(frozen=True, slots=True)
class Agreement:
    models: list[str]
    agree: int  # reviews that every model gave the same label
    disagree: int
    disagreements: list[int]  # positions of the reviews on which the labels differ

    @classmethod
    def of(cls, results: Sequence[ModelScores]) -> Agreement:
        disagreements = [index for index, row in enumerate(zip(*(r.labels for r in results), strict=True))
                         if len(set(row)) > 1]
        return cls([r.model for r in results], len(results[0].labels) - len(disagreements), len(disagreements),
                   disagreements)


@dataclass(frozen=True, slots=True)
class ScoringResult:
    results: list[ModelScores]  # one per model, in the order asked
    agreement: Agreement | None  # when more than one model answered


class ScoringCore:
    """The models, their batchers and the scoring rules; shared by every request and every way in."""

    def __init__(self, repository: ModelRepository, batchers: dict[str, Batcher], limits: Limits):
        missing = sorted(set(repository.models) - set(batchers))
        if missing:
            raise ValueError(f"no batcher for model(s) {', '.join(missing)}")
        self.repository, self.batchers, self.limits = repository, batchers, limits
        self._resolved: dict[tuple[str, ...], list[LoadedModel]] = {}  # clients repeat a handful of model lists

    @classmethod
    def from_repository(cls, repository: ModelRepository, settings: Settings) -> ScoringCore:
        """One dynamic batcher per model, sized by the settings."""
        batchers = {
            name: Batcher(model.predict, max_batch_size=settings.max_batch_size(name),
                          max_wait=settings.batch_max_wait_ms / 1000, timeout=settings.request_timeout_seconds,
                          on_batch=metrics.for_model(name).batch_size.observe, name=name)
            for name, model in repository.models.items()
        }
        return cls(repository, batchers, Limits.from_settings(settings))

    @classmethod
    def load(cls, settings: Settings) -> ScoringCore:
        """The models in ``settings.model_dir``; raises ModelLoadError for broken files or settings."""
        repository = ModelRepository.load(
            settings.model_dir, intra_op_threads=settings.ort_intra_op_threads,
            inter_op_threads=settings.ort_inter_op_threads, default_model=settings.default_model,
            skip_broken=settings.skip_broken_models)
        unknown = sorted(set(settings.batch_max_sizes) - set(repository.models) - set(repository.failed))
        if unknown:
            raise ModelLoadError(f"SENTIMENT_BATCH_MAX_SIZES names models that do not exist: {', '.join(unknown)}; "
                                 f"loaded: {', '.join(repository.models)}")
        return cls.from_repository(repository, settings)

    @property
    def ready(self) -> bool:
        return self.repository.ready

    def warm_up(self) -> None:
        self.repository.warm_up()

    async def close(self) -> None:
        """Stop taking work and finish what every batcher has queued."""
        await asyncio.gather(*(batcher.close() for batcher in self.batchers.values()))

    def check(self, reviews: Sequence[str]) -> None:
        """The request limits (the count and each review's length)."""
        limits = self.limits
        if len(reviews) > limits.max_reviews:
            raise InvalidInput(("reviews",), f"too many reviews: {len(reviews)}, at most {limits.max_reviews} per "
                               "request (SENTIMENT_MAX_REVIEWS); split them over several requests", len(reviews))
        for position, review in enumerate(reviews):
            if len(review) > limits.max_review_chars:
                raise InvalidInput(("reviews", position), f"review {position} has {len(review)} characters, at most "
                                   f"{limits.max_review_chars} are accepted (SENTIMENT_MAX_REVIEW_CHARS); shorten it",
                                   len(review))

    def resolve(self, requested: Iterable[str] | None) -> list[LoadedModel]:
        """The models a request names, in the order asked, without repeats: none means the default,
        ``all`` every model; a name may also be a comma-separated list of names."""
        key = tuple(requested or ())
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolve(key)
            if len(self._resolved) < RESOLVED_CACHE_SIZE:
                self._resolved[key] = resolved
        return resolved

    def _resolve(self, requested: tuple[str, ...]) -> list[LoadedModel]:
        models = self.repository.models
        names = [name.strip() for entry in requested for name in entry.split(",")]
        names = [name for name in names if name]
        if not names:
            return [models[self.repository.default_name]]
        if ALL_MODELS in names:
            return list(models.values())
        unknown = [name for name in names if name not in models]
        if unknown:
            raise UnknownModelError(unknown, self.repository.names)
        return [models[name] for name in dict.fromkeys(names)]

    async def score(self, reviews: Sequence[str], requested: Iterable[str] | None = None) -> ScoringResult:
        """Scores ``reviews`` with the models named by ``requested`` (see ``resolve``)."""
        self.check(reviews)
        return await self.score_with(self.resolve(requested), reviews)

    async def score_with(self, models: list[LoadedModel], reviews: Sequence[str]) -> ScoringResult:
        """Scores checked ``reviews`` with already resolved ``models``."""
        metrics.REQUEST_REVIEWS.observe(len(reviews))
        # Models that share a tokenizer score the very same token batch.
        tokenizers = list({id(m.tokenizer): m.tokenizer for m in models}.values())
        if sum(map(len, reviews)) > INLINE_TOKENIZE_CHARS:
            encoded = await asyncio.to_thread(lambda: [t.encode_reviews(reviews) for t in tokenizers])
        else:
            encoded = [t.encode_reviews(reviews) for t in tokenizers]
        batches = {id(t): batch for t, batch in zip(tokenizers, encoded, strict=True)}
        scoring = [self._score(m, batches[id(m.tokenizer)]) for m in models]
        results = [await scoring[0]] if len(scoring) == 1 else list(await asyncio.gather(*scoring))
        return ScoringResult(results, Agreement.of(results) if len(results) > 1 else None)

    async def _score(self, model: LoadedModel, encoded: EncodedBatch) -> ModelScores:
        name = model.name
        model_metrics = metrics.for_model(name)
        batcher = self.batchers[name]
        started = time.perf_counter()
        try:
            scores = (await batcher.predict(encoded.tokens)).tolist()
        except BatcherClosedError:
            raise self._unavailable(name, f"model {name} is shutting down; retry on another instance") from None
        except TimeoutError:
            raise self._unavailable(name, f"prediction took longer than {batcher.timeout} s "
                                          "(SENTIMENT_REQUEST_TIMEOUT_SECONDS); retry with fewer reviews") from None
        except Exception as error:
            log.exception("model %s failed", name)
            raise self._unavailable(name, f"model {name} failed to score the reviews ({type(error).__name__}); "
                                          "other models are unaffected") from None
        if not all(0 <= score <= 1 for score in scores):  # NaN fails too
            log.error("model %s returned scores outside [0, 1]", name)
            raise self._unavailable(name, f"model {name} returned invalid scores; other models are unaffected")
        model_metrics.latency.observe(time.perf_counter() - started)
        model_metrics.ok.inc()
        model_metrics.reviews.inc(len(scores))
        return ModelScores(name, model.version, scores, [label_of(score) for score in scores], encoded)

    @staticmethod
    def _unavailable(name: str, message: str) -> ModelUnavailable:
        metrics.for_model(name).unavailable.inc()
        return ModelUnavailable(name, message)
