"""Request and response models; they are also the OpenAPI documentation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from artifacts.metadata import TestMetrics, TrainingRecord

POSITIVE_EXAMPLE = "One of the best films I have seen in years: moving, funny and beautifully acted."
NEGATIVE_EXAMPLE = "A dull, lifeless mess. The plot makes no sense and the acting is painfully bad."
# A character that is not whitespace to Python's str.split(), which the tokenizer uses; spelled out
# because a JSON-schema (ECMAScript) \S disagrees with Python on a few characters such as U+0085.
HAS_TEXT_PATTERN = "[^\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reviews": [POSITIVE_EXAMPLE, NEGATIVE_EXAMPLE]}]},
    )

    # The "some non-space text" rule is enforced by the validator below, with a clearer message.
    reviews: list[Annotated[StrictStr, WithJsonSchema(
        {"type": "string", "minLength": 1, "pattern": HAS_TEXT_PATTERN})]] = Field(
        min_length=1, description="Raw review texts, in the order the predictions should come back.")

    @field_validator("reviews")
    @classmethod
    def reviews_have_text(cls, reviews: list[str]) -> list[str]:
        blank = [index for index, review in enumerate(reviews) if not review.strip()]
        if blank:
            raise PydanticCustomError("blank_review", "reviews must contain text; reviews at positions {positions} are "
                                      "empty or whitespace only", {"positions": str(blank)})
        return reviews


class Prediction(BaseModel):
    score: float = Field(ge=0, le=1, description="Probability that the review is positive.", examples=[0.97])
    label: Literal["positive", "negative"] = Field(description="`positive` when score >= 0.5, else `negative`.")


class ModelResult(BaseModel):
    model: str = Field(examples=["conv1d"])
    version: str = Field(description="The export that answered: the first 12 hex digits of the ONNX file's sha256 "
                                     "(as in /models).", examples=["3f9a1c0b7d2e"])
    predictions: list[Prediction] = Field(description="One per review, in input order.")


class Agreement(BaseModel):
    models: list[str]
    agree: int = Field(description="Reviews that every model gave the same label.")
    disagree: int = Field(description="Reviews on which the labels differ.")
    disagreements: list[int] = Field(description="Positions of the reviews on which the labels differ.")


class PredictResponse(BaseModel):
    results: list[ModelResult] = Field(description="One entry per model, in the order asked.")
    agreement: Agreement | None = Field(None, description="Present when more than one model was asked.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "results": [
            {"model": "conv1d", "version": "3f9a1c0b7d2e", "predictions": [{"score": 0.97, "label": "positive"},
                                                {"score": 0.04, "label": "negative"}]},
            {"model": "conv_lstm", "version": "8b04e6a1f5c3", "predictions": [{"score": 0.93, "label": "positive"},
                                                   {"score": 0.61, "label": "positive"}]},
        ],
        "agreement": {"models": ["conv1d", "conv_lstm"], "agree": 1, "disagree": 1, "disagreements": [1]},
    }]})


class ModelInfo(BaseModel):
    name: str
    version: str = Field(description="The first 12 hex digits of the ONNX file's sha256; /predict results name it.")
    default: bool = Field(description="Used when a request names no model.")
    test_accuracy: float | None = Field(description="Accuracy on the 25,000 IMDB test reviews.")
    test_metrics: TestMetrics | None = Field(
        description="Accuracy, loss, ROC AUC, F1 and confusion matrix on the test set.")
    parameters: int | None
    max_len: int = Field(description="Tokens per review the model reads (longer reviews keep their last ones).")
    num_words: int = Field(description="Vocabulary size: word indices at or above it count as unknown.")
    vocabulary_sha256: str
    onnx_sha256: str = Field(description="Checksum of the loaded .onnx file.")
    onnx_bytes: int | None
    created: datetime | None = None
    training: TrainingRecord | None = Field(None, description="Training configuration and timing.")


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str] = Field(description="Models loaded and serving.")
    failed: dict[str, str] = Field(default_factory=dict, description="Models skipped at start-up, with the reason.")


class ErrorDetail(BaseModel):
    type: str = Field(description="A stable word for the kind of error, e.g. `unknown_model`, `missing`, "
                                  "`unauthorized`, `model_unavailable`.", examples=["unknown_model"])
    loc: list[str | int] = Field(description="Where the problem is: `body`, `query`, `header` or `model`, then the "
                                             "path within it; empty when no one field is at fault.",
                                 examples=[["query", "model"]])
    msg: str = Field(description="What was wrong and how to fix it.")
    ctx: dict | None = Field(None, description="Details for some validation errors, e.g. a length limit.")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    detail: list[ErrorDetail]
