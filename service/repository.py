"""Model repository: finds ``<name>.onnx`` + ``<name>.json`` pairs, validates and loads them.

Every check that can fail at start-up does so here, with a message naming the file, so a broken
deployment stops before it takes traffic.

``rescan`` re-reads the folder for a reload without a restart (``POST /admin/reload``, SIGHUP, polling): the
same checks as start-up, the models whose files have not changed reused as they are, the new and replaced ones
loaded and warmed up. It accepts what a start-up would accept: without ``skip_broken``, one broken file
refuses the whole reload and the served set stays as it was; with it, the broken files are left out (a served
model whose new file is broken keeps its old version) and the rest is applied.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifacts.loading import load_tokenizer
from artifacts.metadata import MetadataError, ModelMetadata, read_metadata
from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import file_sha256

log = logging.getLogger("service.repository")

SCORE_TYPES = ("tensor(float)", "tensor(double)")
LOGIT_OUTPUT = "logit"  # the calibrated logit, a second output of calibrated exports (training/calibrate.py)
WARM_UP_REVIEW = "A warm-up review: the acting was fine and the plot was not bad at all."
# The key of ``failed`` for what refuses a reload as a whole rather than one file (no model name can be it).
FOLDER = "(model folder)"


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
    # What the files looked like when they were read (``file_signature``): a reload reuses the model without
    # reading them again while the signature is the same.
    source: tuple | None = field(default=None, repr=False, compare=False)
    onnx_bytes: int | None = None  # the size of the .onnx file it was loaded from (the file may change since)

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
        onnx_files = _model_files(model_dir)
        options = session_options(intra_op_threads, inter_op_threads)
        tokenizers: dict = {}  # models with the same vocabulary and lengths share one Tokenizer
        vocabularies: dict = {}
        loaded, failed = [], {}
        for onnx_path in onnx_files:
            try:
                model = _load_model(onnx_path, options, tokenizers, vocabularies)
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

    def rescan(self, model_dir: Path, *, intra_op_threads: int = 1, inter_op_threads: int = 1,
               default_model: str | None = None, skip_broken: bool = False) -> Rescan:
        """The folder read again against this repository, as ``load`` reads it: the models whose files are
        unchanged are reused (the same objects), new and changed ones loaded and warmed up (one inference each).
        Blocking (a reload calls it in a worker thread); it changes nothing that is served: the caller swaps
        ``Rescan.repository`` in, or, when it is None, keeps this one (``Rescan.failed`` says why)."""
        model_dir = Path(model_dir)
        try:
            onnx_files = _model_files(model_dir)
        except ModelLoadError as error:
            return Rescan.refused(self, {FOLDER: str(error)})
        options = session_options(intra_op_threads, inter_op_threads)
        # Served tokenizers are reused while their vocabulary file is the one they were read from, so models that
        # share a tokenizer still tokenize a request once.
        vocabularies: dict = {}
        tokenizers = {}
        for model in self.models.values():
            if model.path is not None and model.path.parent == model_dir:
                key = _tokenizer_key(model, model_dir)
                if _vocabulary_sha256(key[0], vocabularies) == model.metadata.vocabulary.sha256:
                    tokenizers[key] = model.tokenizer
        loaded, failed = [], {}
        for onnx_path in onnx_files:
            current = self.models.get(onnx_path.stem)
            if current is not None and current.path != onnx_path:
                current = None  # served from another folder (SENTIMENT_MODEL_DIR is read once, at start-up)
            try:
                model = _load_model(onnx_path, options, tokenizers, vocabularies, current)
                if model is not current:
                    warm_up(model)
            except Exception as error:  # ModelLoadError, or what onnxruntime raises for a graph it cannot run
                failed[onnx_path.stem] = str(error) if isinstance(error, ModelLoadError) else \
                    f"{onnx_path}: {type(error).__name__}: {error}"
                if current is not None and skip_broken:
                    loaded.append(current)  # a broken new file: the served version stays
                continue
            loaded.append(model)
        if failed and not skip_broken:
            return Rescan.refused(self, failed)
        if not loaded:
            return Rescan.refused(self, {FOLDER: f"no model in {model_dir} could be loaded", **failed})
        try:
            repository = type(self).of(loaded, default_model)
        except ModelLoadError as error:
            return Rescan.refused(self, {FOLDER: str(error), **failed})
        repository.failed = failed
        return Rescan.of(self, repository, failed)

    def warm_up(self) -> None:
        """One inference per model, so the first request does not pay for lazy initialisation."""
        for model in self.models.values():
            model.predict(model.tokenizer.encode_batch([WARM_UP_REVIEW]))
        self.warmed_up = True


@dataclass(frozen=True)
class Rescan:
    """What re-reading the model folder found, against the repository being served."""

    repository: ModelRepository | None  # what to serve now; None: the reload is refused, the served set stays
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # served before, their files changed: a new version
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # file (model name, or FOLDER) -> why it was not taken

    @property
    def applied(self) -> bool:
        return self.repository is not None

    @classmethod
    def refused(cls, served: ModelRepository, failed: dict[str, str]) -> Rescan:
        return cls(None, unchanged=served.names, failed=failed)

    @classmethod
    def of(cls, served: ModelRepository, new: ModelRepository, failed: dict[str, str]) -> Rescan:
        before, after = served.models, new.models
        return cls(new, added=[name for name in after if name not in before],
                   replaced=[name for name, model in after.items() if name in before and before[name] is not model],
                   removed=[name for name in before if name not in after],
                   unchanged=[name for name, model in after.items() if before.get(name) is model], failed=failed)


def warm_up(model: LoadedModel) -> None:
    """One inference; a model that loads but cannot score is broken (ModelLoadError)."""
    try:
        scores = model.predict(model.tokenizer.encode_batch([WARM_UP_REVIEW]))
    except Exception as error:  # onnxruntime raises several unrelated types
        raise ModelLoadError(f"{model.path}: the warm-up inference failed ({type(error).__name__}: {error})") from None
    if len(scores) != 1 or not 0 <= float(scores[0]) <= 1:
        raise ModelLoadError(f"{model.path}: the warm-up inference gave {scores!r}, not one probability")


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _model_files(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist (set SENTIMENT_MODEL_DIR)")
    onnx_files = sorted(model_dir.glob("*.onnx"))
    if not onnx_files:
        raise ModelLoadError(f"model directory {model_dir} has no *.onnx files")
    return onnx_files


def file_signature(*paths: Path) -> tuple:
    """Size, modification and change times and inode of each file (None for a missing one): a file written
    again, renamed over or touched gets another signature (its change time moves even when its modification
    time is restored)."""
    signature = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            signature.append(None)
        else:
            signature.append((stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return tuple(signature)


def folder_signature(model_dir: Path) -> tuple:
    """The names and ``file_signature`` of every file in the model folder: it changes when a file is added,
    removed or written (what polling for changes compares)."""
    try:
        paths = sorted(path for path in Path(model_dir).iterdir() if path.is_file())
    except OSError:
        return ()
    return tuple(zip((path.name for path in paths), file_signature(*paths), strict=True))


def _tokenizer_key(model: LoadedModel, model_dir: Path) -> tuple:
    """``artifacts.loading.load_tokenizer``'s cache key for the model's tokenizer."""
    metadata = model.metadata
    return Path(model_dir) / metadata.vocabulary.file, metadata.num_words, metadata.max_len, metadata.tokenizer


def _vocabulary_sha256(path: Path, known: dict[Path, str | None]) -> str | None:
    """The file's sha256 (None when it is missing), each file hashed once per load or rescan (``known``)."""
    if path not in known:
        known[path] = file_sha256(path) if path.is_file() else None
    return known[path]


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


def _load_model(onnx_path: Path, options: ort.SessionOptions, tokenizers: dict, vocabularies: dict,
                current: LoadedModel | None = None) -> LoadedModel:
    """The model of ``onnx_path``; ``current`` itself when it was loaded from these very files (a reload)."""
    metadata_path = onnx_path.with_suffix(".json")
    if current is not None and current.source is not None and current.source == file_signature(
            onnx_path, metadata_path, onnx_path.parent / current.metadata.vocabulary.file):
        return current  # not even read: not one of its files was written since
    try:
        metadata = read_metadata(metadata_path)
    except MetadataError as error:
        raise ModelLoadError(str(error)) from None
    if metadata.name != onnx_path.stem:
        raise ModelLoadError(f"{metadata_path}: name {metadata.name!r} does not match the file name {onnx_path.name}")
    vocabulary_path = onnx_path.parent / metadata.vocabulary.file
    # Read before the files, so a file written while they are read makes the next reload read them again.
    source = file_signature(onnx_path, metadata_path, vocabulary_path)

    try:
        model_bytes = onnx_path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"{onnx_path}: cannot be read ({error})") from None
    if hashlib.sha256(model_bytes).hexdigest() != metadata.onnx_sha256:
        raise ModelLoadError(f"{onnx_path}: sha256 does not match onnx_sha256 in {metadata_path.name}; "
                             "the model and its metadata are from different exports")
    # The vocabulary is checked here for every model, not only for the first of those that share a tokenizer.
    vocabulary_sha256 = _vocabulary_sha256(vocabulary_path, vocabularies)
    if vocabulary_sha256 is None:
        raise ModelLoadError(f"{vocabulary_path}: vocabulary file named in {metadata.name}.json is missing")
    if vocabulary_sha256 != metadata.vocabulary.sha256:
        raise ModelLoadError(f"{vocabulary_path}: sha256 does not match the vocabulary checksum in "
                             f"{metadata.name}.json")
    if current is not None and current.metadata == metadata:
        return current  # the same export, its files touched or copied again
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

    return LoadedModel(metadata, tokenizer, predict, onnx_path, logits, source, len(model_bytes))
