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

``explain`` answers ``/explain``: one model, each review's words with their contributions to the logit
(``service/explaining.py`` has the methods), computed in a worker thread per model.

``reload`` re-reads the model folder without a restart (``ModelRepository.rescan``) and swaps the new set in
at once, between two steps of the event loop: a request scores with the models it resolved, on their sessions,
whether a reload comes before it is answered or not. A replaced or removed model's batcher takes no new work and
drains what it has queued, on the old session; a request that resolved the old model and reaches scoring only
after the swap (a large one, tokenized in a thread) is scored on the old session directly.

Every prediction and explanation carries what the model made of the text (``warnings_of``):

* ``no_known_words``: no word of the review is in the model's vocabulary (or it has no word at all). The score
  is the model's answer to a review of unknown words, not a judgement of the text.
* ``few_known_words``: the model knew fewer than half of the words it read (``FEW_KNOWN_SHARE``), e.g. a
  review in another language or mostly names and typos: the score rests on a few words.
* ``truncated``: the review has more words than the model reads (``max_len``, 500); only the last ones
  were read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from artifacts.tokenizer import EncodedBatch
from service import explaining, metrics
from service.batching import Batcher, BatcherClosedError
from service.config import Settings
from service.explaining import TokenContribution
from service.repository import LoadedModel, ModelLoadError, ModelRepository, Rescan

log = logging.getLogger("service.scoring")

Label = Literal["positive", "negative"]
POSITIVE_THRESHOLD = 0.5  # a score at or above it is labelled positive
ALL_MODELS = "all"
# Tokenizing this many characters takes about 0.4 ms: beyond it, tokenize in a worker thread so one
# huge request cannot stall the event loop.
INLINE_TOKENIZE_CHARS = 20_000
# With the spelling rule (robust_bag), an unknown word seen for the first time costs about 20 µs: 20,000 characters
# of made-up 7-letter words took 51 ms, 4,000 about 10 ms (a typical review, 1,300 characters, stays inline).
INLINE_SPELLING_CHARS = 4_000
RESOLVED_CACHE_SIZE = 1024
SHUTTING_DOWN = "(service)"  # the key of a reload's ``failed`` when the service is stopping (no model name can be it)

WarningCode = Literal["no_known_words", "few_known_words", "truncated"]
NO_KNOWN_WORDS: WarningCode = "no_known_words"
FEW_KNOWN_WORDS: WarningCode = "few_known_words"
TRUNCATED: WarningCode = "truncated"
FEW_KNOWN_SHARE = 0.5  # few_known_words: fewer than this share of the words read are known
_NO_WARNINGS: tuple[WarningCode, ...] = ()


def label_of(score: float) -> Label:
    return "positive" if score >= POSITIVE_THRESHOLD else "negative"


def warnings_of(words: int, known: int, truncated: bool) -> tuple[WarningCode, ...]:
    """The warning codes of one review from how the model read it (see the module docstring)."""
    if known and known >= FEW_KNOWN_SHARE * words and not truncated:  # nearly every review
        return _NO_WARNINGS
    found: list[WarningCode] = []
    if not known:
        found.append(NO_KNOWN_WORDS)
    elif known < FEW_KNOWN_SHARE * words:
        found.append(FEW_KNOWN_WORDS)
    if truncated:
        found.append(TRUNCATED)
    return tuple(found)


def is_blank(review: str) -> bool:
    """No text to score: empty or whitespace only (the tokenizer splits on Python's whitespace)."""
    return not review.strip()


def review_problem(review: object, max_chars: int) -> str | None:
    """Why one review cannot be scored, as the end of a sentence about it ("review 3 ..."), or None: the per-review
    rules of every way in (a string, with text, at most ``max_chars`` characters)."""
    if not isinstance(review, str):
        return f"is not a string ({type(review).__name__})"
    if is_blank(review):
        return "is empty or whitespace only"
    if len(review) > max_chars:
        return f"has {len(review)} characters, at most {max_chars} are accepted (SENTIMENT_MAX_REVIEW_CHARS)"
    return None


def encode_once(models: Iterable[LoadedModel], reviews: Sequence[str]) -> dict[int, EncodedBatch]:
    """The reviews tokenized once per tokenizer, keyed by ``id(model.tokenizer)``: models that share a tokenizer
    score the very same token batch."""
    tokenizers = {id(model.tokenizer): model.tokenizer for model in models}
    return {key: tokenizer.encode_reviews(reviews) for key, tokenizer in tokenizers.items()}


def check_scores(model: str, scores: list[float]) -> None:
    """ModelUnavailable (logged) unless every score is a probability; NaN fails too."""
    if not all(0 <= score <= 1 for score in scores):
        log.error("model %s returned scores outside [0, 1]", model)
        raise ModelUnavailable(model, f"model {model} returned invalid scores; other models are unaffected")


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
    max_explain_reviews: int = 16
    # SENTIMENT_REQUEST_TIMEOUT_SECONDS for explanations and for a model scored past its batcher (a reload
    # replaced it); the batchers time their predictions out themselves
    explain_timeout_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_reviews, settings.max_review_chars, settings.explain_max_reviews,
                   settings.request_timeout_seconds)


@dataclass(frozen=True, slots=True)
class ReviewScore:
    score: float  # probability that the review is positive
    label: Label
    words_read: int  # words in the model's input (at most max_len)
    known_words: int  # of those, the words in the model's vocabulary
    truncated: bool  # words before the last max_len were left out

    @property
    def warnings(self) -> tuple[WarningCode, ...]:
        return warnings_of(self.words_read, self.known_words, self.truncated)


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
        return [ReviewScore(score, label, *reading)
                for score, label, reading in zip(self.scores, self.labels, self.encoded.readings(), strict=True)]


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


@dataclass(frozen=True, slots=True)
class Explanation:
    """One review explained: its score and label as /predict gives them, how it was read, and its words."""

    score: float
    label: Label
    logit: float  # the model's logit (calibrated models: after the calibration map); score = sigmoid(logit)
    bias: float | None  # exact method: logit == bias + sum of the contributions; occlusion: None
    words_read: int
    known_words: int
    truncated: bool
    tokens: list[TokenContribution]  # every word of the review, in order; truncated ones have contribution 0

    @property
    def warnings(self) -> tuple[WarningCode, ...]:
        return warnings_of(self.words_read, self.known_words, self.truncated)


@dataclass(frozen=True, slots=True)
class ExplainResult:
    model: str
    version: str
    method: Literal["exact", "occlusion"]
    explanations: list[Explanation]  # one per review, in input order


class ScoringCore:
    """The models, their batchers and the scoring rules; shared by every request and every way in."""

    def __init__(self, repository: ModelRepository, batchers: dict[str, Batcher], limits: Limits):
        missing = sorted(set(repository.models) - set(batchers))
        if missing:
            raise ValueError(f"no batcher for model(s) {', '.join(missing)}")
        # A reload replaces the repository, the batchers and the caches together, in one step of the event loop.
        self.repository, self.batchers, self.limits = repository, batchers, limits
        self._resolved: dict[tuple[str, ...], list[LoadedModel]] = {}  # clients repeat a handful of model lists
        # Per model, made on its first /explain: the model it was made for, the attribution method (it keeps
        # per-model caches) and one worker thread, so explanations of one model run one at a time, beside that
        # model's batcher.
        self._explainers: dict[str, tuple[LoadedModel, explaining.Method, ThreadPoolExecutor]] = {}
        self._closed = False
        self._reloading = asyncio.Lock()  # one reload at a time
        self._retiring: set[asyncio.Future] = set()  # replaced batchers and explainers, draining

    @staticmethod
    def batcher_for(name: str, model: LoadedModel, settings: Settings) -> Batcher:
        """A dynamic batcher for one model, sized by the settings."""
        return Batcher(model.predict, max_batch_size=settings.max_batch_size(name),
                       max_wait=settings.batch_max_wait_ms / 1000, timeout=settings.request_timeout_seconds,
                       on_batch=metrics.for_model(name).batch_size.observe, name=name)

    @classmethod
    def from_repository(cls, repository: ModelRepository, settings: Settings) -> ScoringCore:
        """One dynamic batcher per model, sized by the settings."""
        batchers = {name: cls.batcher_for(name, model, settings) for name, model in repository.models.items()}
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
        """Blocking; warms the repository served when it returns, also when a reload swapped one in meanwhile."""
        while True:
            repository = self.repository
            repository.warm_up()
            if repository is self.repository:
                return

    async def close(self) -> None:
        """Stop taking work and finish what every batcher and explainer has queued."""
        self._closed = True
        executors = [executor for _, _, executor in self._explainers.values()]
        await asyncio.gather(*(batcher.close() for batcher in self.batchers.values()),
                             *(asyncio.to_thread(executor.shutdown, wait=True) for executor in executors),
                             *list(self._retiring))

    # ---- reloading the model folder

    async def reload(self, settings: Settings) -> Rescan:
        """Re-read ``settings.model_dir`` and serve what it holds now (``ModelRepository.rescan``): the new
        and replaced models are loaded and warmed up in a worker thread while the old set serves, then swapped in
        at once. When the rescan refuses the folder (a broken file, without SENTIMENT_SKIP_BROKEN_MODELS) the
        served set stays as it was and ``failed`` (what /readyz lists) says why."""
        async with self._reloading:
            if self._closed:
                return Rescan.refused(self.repository, {SHUTTING_DOWN: "the service is shutting down"})
            served = self.repository
            rescan = await asyncio.to_thread(
                served.rescan, settings.model_dir, intra_op_threads=settings.ort_intra_op_threads,
                inter_op_threads=settings.ort_inter_op_threads, default_model=settings.default_model,
                skip_broken=settings.skip_broken_models)
            if self._closed:
                return Rescan.refused(served, {SHUTTING_DOWN: "the service is shutting down"})
            if not rescan.applied:
                served.failed = rescan.failed
                log.error("reload refused, the served models are unchanged: %s", rescan.failed)
                return rescan
            self._swap(rescan.repository, settings)
            log.info("reloaded %s: added %s, replaced %s, removed %s, unchanged %s%s", settings.model_dir,
                     rescan.added, rescan.replaced, rescan.removed, rescan.unchanged,
                     f"; left out: {rescan.failed}" if rescan.failed else "")
            return rescan

    def _swap(self, repository: ModelRepository, settings: Settings) -> None:
        """Serve ``repository`` from now on (synchronous: no request sees half of it). Unchanged models keep
        their batchers and explainers; the others get new ones, and the old ones drain in the background."""
        served, batchers = self.repository, {}
        for name, model in repository.models.items():
            batchers[name] = (self.batchers[name] if served.models.get(name) is model
                              else self.batcher_for(name, model, settings))
        repository.warmed_up = served.warmed_up  # the new models are warm: the rescan ran one inference each
        retired = [batcher for name, batcher in self.batchers.items() if batchers.get(name) is not batcher]
        explainers = {name: entry for name, entry in self._explainers.items()
                      if repository.models.get(name) is entry[0]}
        retired_executors = [entry[2] for name, entry in self._explainers.items() if name not in explainers]
        self.repository, self.batchers, self._explainers, self._resolved = repository, batchers, explainers, {}
        for batcher in retired:  # takes no new work now; what it has queued runs on the old session
            self._retire(batcher.close())
        for executor in retired_executors:
            self._retire(asyncio.to_thread(executor.shutdown, wait=True))

    def _retire(self, draining) -> None:
        future = asyncio.ensure_future(draining)
        self._retiring.add(future)
        future.add_done_callback(self._retired)

    def _retired(self, future: asyncio.Future) -> None:
        self._retiring.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("a replaced model did not drain cleanly: %r", future.exception())

    def _served(self, model: LoadedModel) -> bool:
        """Whether ``model`` is the one served under its name (not one a reload has replaced or removed)."""
        return self.repository.models.get(model.name) is model

    def check(self, reviews: Sequence[str], max_reviews: int | None = None,
              setting: str = "SENTIMENT_MAX_REVIEWS") -> None:
        """The request limits (the count and each review's length); ``max_reviews`` and ``setting`` for a
        route with a limit of its own."""
        limits = self.limits
        max_reviews = limits.max_reviews if max_reviews is None else max_reviews
        if len(reviews) > max_reviews:
            raise InvalidInput(("reviews",), f"too many reviews: {len(reviews)}, at most {max_reviews} per "
                               f"request ({setting}); split them over several requests", len(reviews))
        for position, review in enumerate(reviews):
            if len(review) > limits.max_review_chars:
                raise InvalidInput(("reviews", position), f"review {position} "
                                   f"{review_problem(review, limits.max_review_chars)}; shorten it", len(review))

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
        if not names:
            return [models[self.repository.default_name]]
        if not all(names):
            raise InvalidInput(("model",), "empty model name; name a model, or leave out ?model= for the default "
                                           f"model ({self.repository.default_name})", list(requested))
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
        inline = INLINE_SPELLING_CHARS if any(model.tokenizer.spells for model in models) else INLINE_TOKENIZE_CHARS
        if sum(map(len, reviews)) > inline:
            batches = await asyncio.to_thread(encode_once, models, reviews)
        else:
            batches = encode_once(models, reviews)
        scoring = [self._score(m, batches[id(m.tokenizer)]) for m in models]
        results = [await scoring[0]] if len(scoring) == 1 else list(await asyncio.gather(*scoring))
        return ScoringResult(results, Agreement.of(results) if len(results) > 1 else None)

    # ---- reviews a client tokenized itself (the Open Inference Protocol's ``tokens`` input, service/v2_protocol.py)

    def check_tokens(self, model: LoadedModel, tokens: np.ndarray) -> np.ndarray:
        """``tokens`` as ``model`` reads them, an ``(n, max_len)`` int32 array, after the request limit on the
        number of reviews and a check that every id is one the model's input can hold (an id past its embedding
        would fail the whole batch it shares with other requests)."""
        max_len, id_count = model.tokenizer.max_len, model.tokenizer.id_count
        if tokens.ndim != 2 or tokens.shape[1] != max_len or tokens.dtype.kind not in "iu":
            raise InvalidInput(("tokens",), f"model {model.name} reads integer token ids of shape [n, {max_len}]; "
                               f"got {tokens.dtype} {list(tokens.shape)}")
        if len(tokens) > self.limits.max_reviews:
            raise InvalidInput(("tokens",), f"too many reviews: {len(tokens)}, at most {self.limits.max_reviews} per "
                               "request (SENTIMENT_MAX_REVIEWS); split them over several requests", len(tokens))
        if tokens.size and (tokens.min() < 0 or tokens.max() >= id_count):
            raise InvalidInput(("tokens",), f"token ids of model {model.name} are 0 to {id_count - 1} (its tokenizer: "
                               f"{model.tokenizer.rule}, {model.tokenizer.num_words} words); got ids from "
                               f"{tokens.min()} to {tokens.max()}")
        return np.ascontiguousarray(tokens, dtype=np.int32)

    async def score_tokens(self, model: LoadedModel, tokens: np.ndarray) -> ModelScores:
        """Scores checked pre-tokenized reviews (``check_tokens``) with ``model``, through its batcher."""
        metrics.REQUEST_REVIEWS.observe(len(tokens))
        return await self._score(model, EncodedBatch(tokens, np.zeros(len(tokens), dtype=bool)))

    async def _predict(self, model: LoadedModel, tokens: np.ndarray) -> np.ndarray:
        """Through the model's batcher; a model a reload replaced after the request resolved it is scored on
        its own (old) session, unbatched, so the request is answered by the model it named."""
        if self._served(model):
            return await self.batchers[model.name].predict(tokens)
        if self._closed:
            raise BatcherClosedError("the model is shutting down")
        return await asyncio.wait_for(asyncio.to_thread(model.predict, tokens), self.limits.explain_timeout_seconds)

    async def _score(self, model: LoadedModel, encoded: EncodedBatch) -> ModelScores:
        name = model.name
        model_metrics = metrics.for_model(name)
        started = time.perf_counter()
        try:
            scores = (await self._predict(model, encoded.tokens)).tolist()
            check_scores(name, scores)
        except ModelUnavailable:
            model_metrics.unavailable.inc()
            raise
        except BatcherClosedError:
            raise self._unavailable(name, f"model {name} is shutting down; retry on another instance") from None
        except TimeoutError:
            raise self._unavailable(name, f"prediction took longer than {self.limits.explain_timeout_seconds} s "
                                          "(SENTIMENT_REQUEST_TIMEOUT_SECONDS); retry with fewer reviews") from None
        except Exception as error:
            log.exception("model %s failed", name)
            raise self._unavailable(name, f"model {name} failed to score the reviews ({type(error).__name__}); "
                                          "other models are unaffected") from None
        model_metrics.latency.observe(time.perf_counter() - started)
        model_metrics.ok.inc()
        model_metrics.reviews.inc(len(scores))
        return ModelScores(name, model.version, scores, [label_of(score) for score in scores], encoded)

    @staticmethod
    def _unavailable(name: str, message: str) -> ModelUnavailable:
        metrics.for_model(name).unavailable.inc()
        return ModelUnavailable(name, message)

    # ---- /explain

    def check_explain(self, reviews: Sequence[str]) -> None:
        self.check(reviews, self.limits.max_explain_reviews, "SENTIMENT_EXPLAIN_MAX_REVIEWS")

    def resolve_one(self, requested: str | None) -> LoadedModel:
        """The one model an explanation is asked of: a name, or none (not even an empty one) for the default."""
        models = self.resolve(None if requested is None else [requested])
        names = [name.strip() for name in (requested or "").split(",") if name.strip()]
        if len(models) != 1 or len(names) != (requested is not None) or ALL_MODELS in names:
            raise InvalidInput(("model",), f"explanations come from one model at a time; name one of "
                               f"{', '.join(self.repository.names)} (or leave out model for the default, "
                               f"{self.repository.default_name})", requested)
        return models[0]

    async def explain(self, reviews: Sequence[str], requested: str | None = None) -> ExplainResult:
        """Explains ``reviews`` with the one model named by ``requested`` (the default without one)."""
        self.check_explain(reviews)
        return await self.explain_with(self.resolve_one(requested), reviews)

    async def explain_with(self, model: LoadedModel, reviews: Sequence[str]) -> ExplainResult:
        """Explains checked ``reviews`` with a resolved ``model``, in that model's explainer thread."""
        name = model.name
        if self._closed:
            raise self._unavailable(name, f"model {name} is shutting down; retry on another instance")
        method, executor = self._explainer(model)
        job = functools.partial(self._explain_now, model, method, reviews)
        # A model a reload replaced after the request resolved it explains in a thread of its own.
        future = asyncio.wrap_future(executor.submit(job)) if executor is not None \
            else asyncio.ensure_future(asyncio.to_thread(job))
        timeout = self.limits.explain_timeout_seconds
        try:
            return await asyncio.wait_for(future, timeout)  # a job still queued then never runs
        except TimeoutError:
            raise self._unavailable(name, f"the explanation took longer than {timeout} s "
                                         "(SENTIMENT_REQUEST_TIMEOUT_SECONDS); retry with fewer or shorter "
                                         "reviews") from None
        except ModelUnavailable:  # check_scores, in the explainer thread
            metrics.for_model(name).unavailable.inc()
            raise
        except Exception as error:
            log.exception("model %s failed to explain", name)
            raise self._unavailable(name, f"model {name} failed to explain the reviews ({type(error).__name__}); "
                                         "other models are unaffected") from None

    def _explainer(self, model: LoadedModel) -> tuple[explaining.Method, ThreadPoolExecutor | None]:
        if not self._served(model):  # replaced by a reload since the request resolved it
            return explaining.method_for(model), None
        explainer = self._explainers.get(model.name)
        if explainer is None:
            explainer = self._explainers[model.name] = (
                model, explaining.method_for(model, self.batchers[model.name].max_batch_size),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"explain-{model.name}"))
        return explainer[1], explainer[2]

    @staticmethod
    def _explain_now(model: LoadedModel, method: explaining.Method, reviews: Sequence[str]) -> ExplainResult:
        """Blocking: tokenize, score, attribute (in the model's explainer thread)."""
        encoded = model.tokenizer.encode_reviews(reviews)
        scores = model.predict(encoded.tokens).tolist()
        check_scores(model.name, scores)
        attributions = explaining.attribute(method, model, reviews, encoded, scores)
        return ExplainResult(model.name, model.version, method.name, [
            Explanation(a.score, label_of(a.score), a.logit, a.bias, words, known, truncated, a.tokens)
            for a, (words, known, truncated) in zip(attributions, encoded.readings(), strict=True)])
