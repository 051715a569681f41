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

SCORE_TYPES = ("tensor(float)", "tensor(double)")
LOGIT_OUTPUT = "logit"  # the calibrated logit, a second output of calibrated exports (training/calibrate.py)
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
    # The (calibrated) logits for a batch, when the graph exposes them; see ``logits``.
    logit_output: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def test_accuracy(self) -> float | None:
        return self.metadata.test_accuracy

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """The logits behind the scores, float64: the graph's ``logit`` output when it has one (calibrated
        exports), else recovered from the probabilities (exact unless they saturate at 0 or 1)."""
        if self.logit_output is not None:
            return self.logit_output(tokens).astype(np.float64)
        scores = self.predict(tokens).astype(np.float64)
        with np.errstate(divide="ignore"):
            return np.log(scores) - np.log1p(-scores)


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
    return max(models.values(), key=default_rank).name


def default_rank(model: LoadedModel) -> tuple[bool, float]:
    """The default model is the one with the best robustness score (``ModelMetadata.robustness_score``); models
    without robustness figures come after, by test accuracy."""
    score = model.metadata.robustness_score
    return (True, score) if score is not None else (False, model.test_accuracy or 0.0)


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
    score_output, *other_outputs = session.get_outputs()
    if (len(score_output.shape) != 2 or score_output.shape[1] != 1 or isinstance(score_output.shape[0], int)
            or score_output.type not in SCORE_TYPES):
        raise ModelLoadError(f"{onnx_path}: output {score_output.name} is {score_output.type} {score_output.shape}; "
                             "expected float or double [batch, 1] (one probability per review)")
    logit_output = next((output for output in other_outputs if output.name == LOGIT_OUTPUT), None)
    unknown = [output.name for output in other_outputs if output is not logit_output]
    if unknown or (logit_output is not None and logit_output.shape != score_output.shape):
        raise ModelLoadError(f"{onnx_path}: outputs {[o.name for o in other_outputs]} beside the score; only an "
                             f"optional {LOGIT_OUTPUT!r} [batch, 1] is understood")
    try:
        tokenizer = load_tokenizer(metadata, onnx_path.parent, tokenizers)
    except MetadataError as error:
        raise ModelLoadError(str(error)) from None
    run = session.run
    input_name, score_name = model_input.name, score_output.name

    def predict(tokens: np.ndarray) -> np.ndarray:
        return run([score_name], {input_name: tokens})[0].reshape(-1)

    if logit_output is None:
        logits = None
    else:
        def logits(tokens: np.ndarray) -> np.ndarray:
            return run([LOGIT_OUTPUT], {input_name: tokens})[0].reshape(-1)

    return LoadedModel(metadata, tokenizer, predict, onnx_path, logits)
