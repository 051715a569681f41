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


def tokenizer(max_len: int = MAX_LEN) -> Tokenizer:
    return Tokenizer(WORDS, NUM_WORDS, max_len)


def share_of_positive_words(tokens: np.ndarray) -> np.ndarray:
    """A transparent stand-in for a model: the share of known words that are positive (0.5 without any)."""
    positive = np.isin(tokens, list(POSITIVE_IDS)).sum(axis=1)
    known = (tokens > OOV).sum(axis=1)
    return np.where(known > 0, positive / np.maximum(known, 1), 0.5).astype(np.float32)


def metadata(name: str, accuracy: float | None = None, max_len: int = MAX_LEN) -> ModelMetadata:
    test_metrics = None if accuracy is None else {
        "accuracy": accuracy, "loss": 0.3, "roc_auc": 0.9, "f1": 0.9, "reviews": 100,
        "confusion_matrix": {"tn": 45, "fp": 5, "fn": 5, "tp": 45}}
    return ModelMetadata(name=name, max_len=max_len, num_words=NUM_WORDS,
                         vocabulary=VocabularyFile(file="fake_vocab.json", sha256="0" * 64),
                         onnx_sha256=hashlib.sha256(name.encode()).hexdigest(), test_metrics=test_metrics)


def model(name: str, predict: Callable[[np.ndarray], np.ndarray] = share_of_positive_words,
          accuracy: float | None = None, shared_tokenizer: Tokenizer | None = None) -> LoadedModel:
    return LoadedModel(metadata(name, accuracy), shared_tokenizer or tokenizer(), predict)


def core(*models: LoadedModel, settings: Settings | None = None) -> ScoringCore:
    """A scoring core over ``models``; the app's lifespan (or ``warm_up()``) warms it."""
    return ScoringCore.from_repository(ModelRepository.of(models), settings or Settings())
