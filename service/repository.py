"""Model repository: finds ``<name>.onnx`` + ``<name>.json`` pairs, validates and loads them.

Every check that can fail at start-up does so here, with a message naming the file, so a broken
deployment stops before it takes traffic.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifacts.loading import load_tokenizer
from artifacts.metadata import MetadataError, ModelMetadata, read_metadata
from artifacts.tokenizer import Tokenizer

log = logging.getLogger("service.repository")

WARM_UP_REVIEW = "A warm-up review: the acting was fine and the plot was not bad at all."


class ModelLoadError(Exception):
    """A model file, its metadata or its vocabulary is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: its metadata, its tokenizer and a blocking ``predict``."""

    metadata: ModelMetadata
    tokenizer: Tokenizer
    # Probabilities for an ``(n, max_len)`` int32 batch; blocking, the batcher calls it off the event loop.
    predict: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    path: Path | None = None  # the .onnx file, when loaded from one

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def test_accuracy(self) -> float | None:
        return self.metadata.test_accuracy


@dataclass
class ModelRepository:
    """The loaded models by name, the ones that failed to load, the default, and whether they are warm."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    default_name: str | None = None
    warmed_up: bool = False

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def ready(self) -> bool:
        return self.warmed_up and bool(self.models)

    @classmethod
    def of(cls, models: Sequence[LoadedModel], default_model: str | None = None) -> ModelRepository:
        """A repository of models made elsewhere (tests, tools); the default as ``load`` chooses it."""
        repository = cls({model.name: model for model in models})
        if not repository.models:
            raise ModelLoadError("a repository needs at least one model")
        repository.default_name = _choose_default(repository.models, default_model)
        return repository

    @classmethod
    def load(cls, model_dir: Path, *, intra_op_threads: int = 1, inter_op_threads: int = 1,
             default_model: str | None = None, skip_broken: bool = False) -> ModelRepository:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ModelLoadError(f"model directory {model_dir} does not exist (set SENTIMENT_MODEL_DIR)")
        onnx_files = sorted(model_dir.glob("*.onnx"))
        if not onnx_files:
            raise ModelLoadError(f"model directory {model_dir} has no *.onnx files")
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        tokenizers: dict = {}  # models with the same vocabulary and lengths share one Tokenizer
        loaded, failed = [], {}
        for onnx_path in onnx_files:
            try:
                model = _load_model(onnx_path, options, tokenizers)
            except ModelLoadError as error:
                if not skip_broken:
                    raise
                log.error("skipping broken model: %s", error)
                failed[onnx_path.stem] = str(error)
                continue
            loaded.append(model)
            log.info("loaded model %s version %s from %s (test accuracy %s)", model.name, model.version, onnx_path,
                     model.test_accuracy)
        if not loaded:
            raise ModelLoadError(f"no model in {model_dir} could be loaded: {failed}")
        repository = cls.of(loaded, default_model)
        repository.failed = failed
        return repository

    def warm_up(self) -> None:
        """One inference per model, so the first request does not pay for lazy initialisation."""
        for model in self.models.values():
            model.predict(model.tokenizer.encode_batch([WARM_UP_REVIEW]))
        self.warmed_up = True


def _choose_default(models: dict[str, LoadedModel], configured: str | None) -> str:
    if configured is not None:
        if configured not in models:
            raise ModelLoadError(
                f"default model {configured!r} (SENTIMENT_DEFAULT_MODEL) is not loaded; loaded: {', '.join(models)}")
        return configured
    return max(models.values(), key=lambda model: model.test_accuracy or 0.0).name


def _load_model(onnx_path: Path, options: ort.SessionOptions, tokenizers: dict) -> LoadedModel:
    metadata_path = onnx_path.with_suffix(".json")
    try:
        metadata = read_metadata(metadata_path)
    except MetadataError as error:
        raise ModelLoadError(str(error)) from None
    if metadata.name != onnx_path.stem:
        raise ModelLoadError(f"{metadata_path}: name {metadata.name!r} does not match the file name {onnx_path.name}")

    model_bytes = onnx_path.read_bytes()
    if hashlib.sha256(model_bytes).hexdigest() != metadata.onnx_sha256:
        raise ModelLoadError(f"{onnx_path}: sha256 does not match onnx_sha256 in {metadata_path.name}; "
                             "the model and its metadata are from different exports")
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises several unrelated types for corrupt files
        raise ModelLoadError(f"{onnx_path}: not a loadable ONNX model ({error})") from None
    (model_input,) = session.get_inputs()
    if model_input.type != "tensor(int32)" or len(model_input.shape) != 2 or model_input.shape[1] != metadata.max_len:
        raise ModelLoadError(f"{onnx_path}: input {model_input.name} is {model_input.type} {model_input.shape}; "
                             f"metadata expects int32 [batch, {metadata.max_len}]")
    (model_output,) = session.get_outputs()
    if len(model_output.shape) != 2 or model_output.shape[1] != 1 or isinstance(model_output.shape[0], int):
        raise ModelLoadError(f"{onnx_path}: output {model_output.name} is {model_output.shape}; "
                             "expected [batch, 1] (one probability per review)")
    try:
        tokenizer = load_tokenizer(metadata, onnx_path.parent, tokenizers)
    except MetadataError as error:
        raise ModelLoadError(str(error)) from None
    return LoadedModel(metadata, tokenizer, _session_predict(session, model_input.name), onnx_path)


def _session_predict(session: ort.InferenceSession, input_name: str) -> Callable[[np.ndarray], np.ndarray]:
    run = session.run

    def predict(tokens: np.ndarray) -> np.ndarray:
        return run(None, {input_name: tokens})[0].reshape(-1)

    return predict
