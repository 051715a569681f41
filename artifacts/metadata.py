"""The metadata file beside every exported model (``<name>.json``): one typed schema for the writer
(``training.pipeline``) and every reader (the service, benchmarks, tests).

Required are the fields the service cannot serve without; the rest describe how the model was made
and are optional, so a model imported from elsewhere can carry less.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SHA256_PATTERN = r"^[0-9a-f]{64}$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
VERSION_LENGTH = 12  # hex digits of the ONNX file's sha256 that name a model's version


class MetadataError(ValueError):
    """A metadata file is missing, not JSON, or does not fit the schema; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VocabularyFile(_Strict):
    file: str = Field(description="Word index file (JSON word -> rank) in the model's folder.")
    sha256: str = Field(pattern=SHA256_PATTERN)


class InputSpec(_Strict):
    name: str = "tokens"
    dtype: Literal["int32"] = "int32"
    shape: list[int | None]


class OutputSpec(_Strict):
    shape: list[int | None] = [None, 1]
    meaning: str = "probability that the review is positive"


class LayerSummary(_Strict):
    name: str
    type: str
    output_shape: list[int | None]
    params: int = Field(ge=0)


class ConfusionMatrix(_Strict):
    tn: int = Field(ge=0)
    fp: int = Field(ge=0)
    fn: int = Field(ge=0)
    tp: int = Field(ge=0)


class TestMetrics(_Strict):
    __test__ = False  # not a pytest test class

    accuracy: float = Field(ge=0, le=1)
    loss: float = Field(ge=0)
    roc_auc: float = Field(ge=0, le=1)
    f1: float = Field(ge=0, le=1)
    confusion_matrix: ConfusionMatrix
    reviews: int = Field(ge=1)


class SeedCandidate(_Strict):
    seed: int
    best_epoch: int = Field(ge=0)
    best_val_accuracy: float
    seconds: float = Field(ge=0)


class Refit(_Strict):
    epochs: int = Field(ge=1)
    train_reviews: int = Field(ge=1, description="Reviews the refit trained on.")
    seconds: float = Field(ge=0)
    held_out_split: float | None = Field(
        None, gt=0, lt=1, description="Fraction of the training reviews kept out of the refit, to fit the "
        "temperature on: the last ones of the chosen seed's shuffle, as Keras takes a validation split.")
    held_out_reviews: int | None = Field(None, ge=1, description="How many reviews that is.")


class TrainingRecord(_Strict):
    optimizer: str
    learning_rate: float = Field(gt=0)
    loss: str
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    validation_split: float = Field(ge=0, lt=1)
    seed: int
    train_reviews: int = Field(ge=1)
    test_reviews: int = Field(ge=1)
    epochs_run: int = Field(ge=1)
    best_epoch: int = Field(ge=0)
    best_val_accuracy: float
    seconds: float = Field(ge=0)
    data: str = Field(description="Where the training data was read from.")
    seed_candidates: list[SeedCandidate] = []
    refit_on_all_training_reviews: Refit | None = None


class CalibrationMetrics(_Strict):
    """How well the scores match the observed frequencies, on the test reviews."""

    ece: float = Field(ge=0, le=1, description="Expected calibration error: 15 equal-width bins of the score, "
                       "|positive fraction - mean score| weighted by the bin's share of reviews.")
    ece_top_label: float | None = Field(
        None, ge=0, le=1, description="Guo et al.'s (2017) expected calibration error: 15 equal-width bins of the "
        "confidence max(score, 1 - score), |accuracy - mean confidence| weighted by the bin's share of reviews.")
    brier: float = Field(ge=0, le=1, description="Mean squared difference between score and label.")
    log_loss: float = Field(ge=0, description="Binary cross-entropy, scores clipped to [1e-7, 1 - 1e-7] as Keras does.")
    min_score: float = Field(ge=0, le=1)
    max_score: float = Field(ge=0, le=1)


class Calibration(_Strict):
    """Temperature scaling, inside the exported graph: score = sigmoid(logit / temperature)."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0, description="Equal to the ONNX graph's `temperature` initializer.")
    fitted_on: str = Field(description="Which reviews the temperature was fitted on (never test reviews).")
    reviews: int = Field(ge=1, description="How many reviews the temperature was fitted on.")
    bins: int = Field(15, ge=1, description="Equal-width score bins of the expected calibration error.")
    test_reviews: int = Field(ge=1, description="Reviews `before` and `after` were measured on.")
    before: CalibrationMetrics = Field(description="The uncalibrated export (float32 sigmoid), on the test reviews.")
    after: CalibrationMetrics = Field(description="The calibrated export, on the test reviews.")
    reliability_diagram: str | None = Field(None, description="PNG in the model's folder: before and after.")


class ModelMetadata(_Strict):
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="Same as the .onnx file's stem.")
    max_len: int = Field(ge=1, description="Tokens per review the model reads.")
    num_words: int = Field(gt=3, description="Vocabulary size: word indices at or above it count as unknown.")
    vocabulary: VocabularyFile
    onnx_sha256: str = Field(pattern=SHA256_PATTERN, description="Checksum of the .onnx file.")
    input: InputSpec | None = None
    output: OutputSpec = OutputSpec()
    architecture: list[LayerSummary] = []
    parameters: int | None = Field(None, ge=0)
    onnx_bytes: int | None = Field(None, ge=1)
    onnx_opset: int | None = None
    parity_max_abs_diff: float | None = Field(
        None, ge=0, description="Largest |ONNX - Keras| score on the parity reviews.")
    test_metrics: TestMetrics | None = Field(None, description="On the 25,000 IMDB test reviews.")
    config: dict = Field(default_factory=dict, description="The training configuration (training/presets.py).")
    training: TrainingRecord | None = None
    calibration: Calibration | None = Field(
        None, description="The temperature the export divides its logit by, and its effect on the test reviews.")
    library_versions: dict[str, str] = {}
    created: datetime | None = None

    @property
    def version(self) -> str:
        """Names the export that answers: the first hex digits of the ONNX file's checksum."""
        return self.onnx_sha256[:VERSION_LENGTH]

    @property
    def test_accuracy(self) -> float | None:
        return None if self.test_metrics is None else self.test_metrics.accuracy


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata at ``path``; MetadataError names the file and the first problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(f"{path}: metadata file for {path.with_suffix('.onnx').name} is missing") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MetadataError(f"{path}: metadata cannot be read ({error})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{path}: metadata is not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise MetadataError(f"{path}: metadata must be a JSON object")
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"field '{'.'.join(map(str, item['loc']))}': {item['msg']}"
                             for item in error.errors(include_url=False)[:3])
        raise MetadataError(f"{path}: metadata does not fit the schema ({problems})") from None


def write_metadata(metadata: ModelMetadata, path: str | Path) -> None:
    Path(path).write_text(metadata.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
