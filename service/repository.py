"""Model repository: finds ``<name>.onnx`` + ``<name>.json`` pairs, validates and loads them.

Every check that can fail at start-up does so here, with a message naming the file, so a broken
deployment stops before it takes traffic.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import file_sha256, load_word_index

log = logging.getLogger("service.repository")

WARM_UP_REVIEW = "A warm-up review: the acting was fine and the plot was not bad at all."


class ModelLoadError(Exception):
    """A model file, its metadata or its vocabulary is missing, corrupt or inconsistent."""


class UnknownModelError(LookupError):
    def __init__(self, unknown: list[str], valid: list[str]):
        self.unknown, self.valid = unknown, valid
        super().__init__(
            f"unknown model {', '.join(map(repr, unknown))}; valid names: {', '.join(valid)} (or 'all')")


@dataclass
class LoadedModel:
    name: str
    path: Path
    metadata: dict
    session: ort.InferenceSession
    tokenizer: Tokenizer
    input_name: str

    @property
    def test_accuracy(self) -> float | None:
        return self.metadata.get("test_metrics", {}).get("accuracy")

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        """Probabilities for an ``(n, max_len)`` int32 batch; blocking, call it off the event loop."""
        return self.session.run(None, {self.input_name: tokens})[0].reshape(-1)


@dataclass
class ModelRepository:
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
        vocabularies: dict[Path, tuple[str, dict[str, int]]] = {}
        tokenizers: dict[tuple, Tokenizer] = {}
        repository = cls()
        for onnx_path in onnx_files:
            try:
                model = _load_model(onnx_path, options, vocabularies, tokenizers)
            except ModelLoadError as error:
                if not skip_broken:
                    raise
                log.error("skipping broken model: %s", error)
                repository.failed[onnx_path.stem] = str(error)
                continue
            repository.models[model.name] = model
            log.info("loaded model %s from %s (test accuracy %s)", model.name, onnx_path, model.test_accuracy)
        if not repository.models:
            raise ModelLoadError(f"no model in {model_dir} could be loaded: {repository.failed}")
        repository.default_name = _choose_default(repository.models, default_model)
        return repository

    def warm_up(self) -> None:
        """One inference per model, so the first request does not pay for lazy initialisation."""
        for model in self.models.values():
            model.predict(model.tokenizer.encode_batch([WARM_UP_REVIEW]))
        self.warmed_up = True

    def resolve(self, requested: Sequence[str] | None) -> list[LoadedModel]:
        """The models named in a request, in the order asked, without repeats."""
        if not requested:
            return [self.models[self.default_name]]
        if "all" in requested:
            return list(self.models.values())
        unknown = [name for name in requested if name not in self.models]
        if unknown:
            raise UnknownModelError(unknown, self.names)
        return [self.models[name] for name in dict.fromkeys(requested)]


def _choose_default(models: dict[str, LoadedModel], configured: str | None) -> str:
    if configured is not None:
        if configured not in models:
            raise ModelLoadError(
                f"default model {configured!r} (SENTIMENT_DEFAULT_MODEL) is not loaded; loaded: {', '.join(models)}")
        return configured
    return max(models.values(), key=lambda model: model.test_accuracy or 0.0).name


def _load_model(onnx_path: Path, options: ort.SessionOptions, vocabularies: dict, tokenizers: dict) -> LoadedModel:
    metadata_path = onnx_path.with_suffix(".json")
    metadata = _read_metadata(metadata_path)
    name = metadata["name"]
    if name != onnx_path.stem:
        raise ModelLoadError(f"{metadata_path}: name {name!r} does not match the file name {onnx_path.name}")

    model_bytes = onnx_path.read_bytes()
    if hashlib.sha256(model_bytes).hexdigest() != metadata["onnx_sha256"]:
        raise ModelLoadError(f"{onnx_path}: sha256 does not match onnx_sha256 in {metadata_path.name}; "
                             "the model and its metadata are from different exports")
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises several unrelated types for corrupt files
        raise ModelLoadError(f"{onnx_path}: not a loadable ONNX model ({error})") from None
    (model_input,) = session.get_inputs()
    if model_input.type != "tensor(int32)" or len(model_input.shape) != 2 or model_input.shape[1] != metadata["max_len"]:
        raise ModelLoadError(f"{onnx_path}: input {model_input.name} is {model_input.type} {model_input.shape}; "
                             f"metadata expects int32 [batch, {metadata['max_len']}]")

    (model_output,) = session.get_outputs()
    if len(model_output.shape) != 2 or model_output.shape[1] != 1 or isinstance(model_output.shape[0], int):
        raise ModelLoadError(f"{onnx_path}: output {model_output.name} is {model_output.shape}; "
                             "expected [batch, 1] (one probability per review)")

    vocabulary_path = onnx_path.parent / metadata["vocabulary"]["file"]
    if vocabulary_path not in vocabularies:
        vocabularies[vocabulary_path] = _read_vocabulary(vocabulary_path, metadata_path)
    vocabulary_sha256, word_index = vocabularies[vocabulary_path]
    if vocabulary_sha256 != metadata["vocabulary"]["sha256"]:
        raise ModelLoadError(f"{vocabulary_path}: sha256 does not match the vocabulary checksum in "
                             f"{metadata_path.name}")
    # Models with the same tokenization share one Tokenizer, so a comparison tokenizes once.
    tokenizer_key = (vocabulary_path, metadata["num_words"], metadata["max_len"])
    if tokenizer_key not in tokenizers:
        tokenizers[tokenizer_key] = Tokenizer(word_index, metadata["num_words"], metadata["max_len"])
    tokenizer = tokenizers[tokenizer_key]
    return LoadedModel(name, onnx_path, metadata, session, tokenizer, model_input.name)


REQUIRED_METADATA = {"name": str, "max_len": int, "num_words": int, "vocabulary": dict, "onnx_sha256": str}


def _read_metadata(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(f"{path}: metadata file for {path.with_suffix('.onnx').name} is missing")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: metadata is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{path}: metadata must be a JSON object")
    for key, kind in REQUIRED_METADATA.items():
        if not isinstance(metadata.get(key), kind):
            raise ModelLoadError(f"{path}: metadata field {key!r} is missing or not a {kind.__name__}")
    vocabulary = metadata["vocabulary"]
    if not isinstance(vocabulary.get("file"), str) or not isinstance(vocabulary.get("sha256"), str):
        raise ModelLoadError(f"{path}: metadata field 'vocabulary' needs 'file' and 'sha256'")
    return metadata


def _read_vocabulary(path: Path, metadata_path: Path) -> tuple[str, dict[str, int]]:
    if not path.is_file():
        raise ModelLoadError(f"{path}: vocabulary file named in {metadata_path.name} is missing")
    try:
        return file_sha256(path), load_word_index(path)
    except ValueError as error:
        raise ModelLoadError(str(error)) from None
