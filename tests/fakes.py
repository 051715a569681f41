"""Fake models for the scoring core and the app: a real Tokenizer over a tiny vocabulary, and a
``predict`` the test chooses. They go through ``create_app(settings, core)``, the way a test injects
collaborators, instead of patching the app's private attributes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from artifacts.metadata import ModelMetadata, VocabularyFile
from artifacts.tokenizer import OOV, Tokenizer
from service.config import Settings
from service.repository import LoadedModel, ModelRepository
from service.scoring import ScoringCore

WORDS = {"good": 1, "great": 2, "fine": 3, "bad": 4, "awful": 5, "film": 6}
POSITIVE_IDS = {1 + 3, 2 + 3, 3 + 3}  # word rank + Keras's offset of 3
NUM_WORDS, MAX_LEN = 10, 8
# A transparent linear model: its logit is the sum of these weights over the words (id = rank + 3).
WORD_WEIGHTS = {"good": 1.0, "great": 2.0, "fine": 0.5, "bad": -1.0, "awful": -2.0, "film": 0.0}


def tokenizer(max_len: int = MAX_LEN) -> Tokenizer:
    return Tokenizer(WORDS, NUM_WORDS, max_len)


def share_of_positive_words(tokens: np.ndarray) -> np.ndarray:
    """A transparent stand-in for a model: the share of known words that are positive (0.5 without any)."""
    positive = np.isin(tokens, list(POSITIVE_IDS)).sum(axis=1)
    known = (tokens > OOV).sum(axis=1)
    return np.where(known > 0, positive / np.maximum(known, 1), 0.5).astype(np.float32)


def linear_logits(tokens: np.ndarray) -> np.ndarray:
    """The logit of a model that adds one weight per known word (``WORD_WEIGHTS``); float64."""
    weights = np.zeros(NUM_WORDS)
    for word, rank in WORDS.items():
        weights[rank + 3] = WORD_WEIGHTS[word]
    return weights[tokens].sum(axis=1)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def linear_model(name: str = "linear", **kwargs) -> LoadedModel:
    """A model with a logit output whose occlusion contributions are exactly ``WORD_WEIGHTS``."""
    return model(name, lambda tokens: sigmoid(linear_logits(tokens)), logits=linear_logits, **kwargs)


# A fake fastText-style bag: logit = BAG_BIAS + mean of word terms + mean of hashed bigram terms over the
# non-padding ids, as training/models.py builds it (with another hash: the explainer must not depend on it).
BAG_BIAS = 0.25
BAG_BUCKETS = 97


def bag_word_terms() -> np.ndarray:
    return np.linspace(-1.5, 2.0, NUM_WORDS)


def bag_bigram_terms() -> np.ndarray:
    return np.random.default_rng(3).normal(0, 1.5, BAG_BUCKETS)


def bag_logits(tokens: np.ndarray) -> np.ndarray:
    tokens = tokens.astype(np.int64)
    words = tokens > 0
    pairs = words[:, :-1] & words[:, 1:]
    buckets = (tokens[:, :-1] * 31 + tokens[:, 1:] * 7) % BAG_BUCKETS
    word_mean = (bag_word_terms()[tokens] * words).sum(axis=1) / np.maximum(words.sum(axis=1), 1)
    bigram_mean = (bag_bigram_terms()[buckets] * pairs).sum(axis=1) / np.maximum(pairs.sum(axis=1), 1)
    return BAG_BIAS + word_mean + bigram_mean


def bag_model(name: str = "bag", **kwargs) -> LoadedModel:
    config = {"family": "bag", "ngram_orders": [2]}
    return model(name, lambda tokens: sigmoid(bag_logits(tokens)), logits=bag_logits, config=config, **kwargs)


def metadata(name: str, accuracy: float | None = None, max_len: int = MAX_LEN,
             config: dict | None = None) -> ModelMetadata:
    test_metrics = None if accuracy is None else {
        "accuracy": accuracy, "loss": 0.3, "roc_auc": 0.9, "f1": 0.9, "reviews": 100,
        "confusion_matrix": {"tn": 45, "fp": 5, "fn": 5, "tp": 45}}
    return ModelMetadata(name=name, max_len=max_len, num_words=NUM_WORDS,
                         vocabulary=VocabularyFile(file="fake_vocab.json", sha256="0" * 64),
                         onnx_sha256=hashlib.sha256(name.encode()).hexdigest(), test_metrics=test_metrics,
                         config=config or {})


def model(name: str, predict: Callable[[np.ndarray], np.ndarray] = share_of_positive_words,
          accuracy: float | None = None, shared_tokenizer: Tokenizer | None = None,
          logits: Callable[[np.ndarray], np.ndarray] | None = None, config: dict | None = None) -> LoadedModel:
    """A fake model; ``logits`` plays the graph's ``logit`` output (without it, logits come from ``predict``)."""
    return LoadedModel(metadata(name, accuracy, config=config), shared_tokenizer or tokenizer(), predict,
                       logit_output=logits)


def core(*models: LoadedModel, settings: Settings | None = None) -> ScoringCore:
    """A scoring core over ``models``; the app's lifespan (or ``warm_up()``) warms it."""
    return ScoringCore.from_repository(ModelRepository.of(models), settings or Settings())
