"""Request and response models; they are also the OpenAPI documentation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from artifacts.metadata import Calibration, Robustness, TestMetrics, TrainingRecord
from service.scoring import is_blank

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
        blank = [index for index, review in enumerate(reviews) if is_blank(review)]
        if blank:
            raise PydanticCustomError("blank_review", "reviews must contain text; reviews at positions {positions} are "
                                      "empty or whitespace only", {"positions": str(blank)})
        return reviews


class ExplainRequest(PredictRequest):
    """The same body as /predict's; at most SENTIMENT_EXPLAIN_MAX_REVIEWS reviews (16 by default)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reviews": ["A beautiful, moving film with wonderful "
                                                                     "acting, though the ending drags."]}]})


WarningCode = Literal["no_known_words", "few_known_words", "truncated"]
WARNINGS_DESCRIPTION = (
    "What to know before trusting the score, as stable codes (empty for nearly every review): `no_known_words` "
    "(no word of the review is in the model's vocabulary, or it has no word at all: the score is the model's "
    "answer to a review of unknown words, not a judgement of the text), `few_known_words` (the model knew fewer "
    "than half of the words it read: the score rests on a few words), `truncated` (the review has more words "
    "than the model reads; only the last ones were read).")


class Prediction(BaseModel):
    score: float = Field(ge=0, le=1, description="Probability that the review is positive.", examples=[0.97])
    label: Literal["positive", "negative"] = Field(description="`positive` when score >= 0.5, else `negative`.")
    words: int = Field(ge=0, description="Words of the review the model read (the last 500 of a longer review).",
                       examples=[14])
    known_words: int = Field(ge=0, description="Of those, the words the model reads as a word of its vocabulary "
                                               "(with the spelling rules, also a misspelt word read as "
                                               "the word it misspells); the others all read as one 'unknown word'.",
                             examples=[14])
    truncated: bool = Field(description="The review has more words than the model reads: the first ones were "
                                        "left out.")
    warnings: list[WarningCode] = Field(description=WARNINGS_DESCRIPTION, examples=[[]])


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
            {"model": "conv1d", "version": "3f9a1c0b7d2e", "predictions": [
                {"score": 0.97, "label": "positive", "words": 14, "known_words": 14, "truncated": False,
                 "warnings": []},
                {"score": 0.04, "label": "negative", "words": 15, "known_words": 15, "truncated": False,
                 "warnings": []}]},
            {"model": "conv_lstm", "version": "8b04e6a1f5c3", "predictions": [
                {"score": 0.93, "label": "positive", "words": 14, "known_words": 14, "truncated": False,
                 "warnings": []},
                {"score": 0.61, "label": "positive", "words": 15, "known_words": 15, "truncated": False,
                 "warnings": []}]},
        ],
        "agreement": {"models": ["conv1d", "conv_lstm"], "agree": 1, "disagree": 1, "disagreements": [1]},
    }]})


class TokenContribution(BaseModel):
    text: str = Field(description="The word as the tokenizer read it (lower-cased, punctuation removed).",
                      examples=["wonderful"])
    start: int = Field(ge=0, description="Offset of its first character in the review as sent.", examples=[36])
    end: int = Field(ge=0, description="Offset after its last character: `review[start:end].lower() == text` "
                                       "(except where a Greek capital sigma's lower-case form depends on "
                                       "letters outside the word).", examples=[45])
    contribution: float = Field(description="The word's effect on the logit: positive pushes towards positive. "
                                            "0 for a word the model did not read.", examples=[0.42])
    truncated: bool = Field(description="Left out by the 500-word truncation: the model never read it.")


class Explanation(Prediction):
    logit: float = Field(description="The model's logit (calibrated models: after the calibration map, which keeps "
                                     "its sign); score = sigmoid(logit).", examples=[1.73])
    bias: float | None = Field(description="Method `exact` only: the part of the logit that belongs to no word "
                                           "(the model's bias and its start-of-review token), so that "
                                           "`logit == bias + sum(contribution)`. Null for `occlusion`.",
                               examples=[0.08])
    tokens: list[TokenContribution] = Field(description="Every word of the review, in order.")


class ExplainResponse(BaseModel):
    model: str = Field(examples=["bigram_bag"])
    version: str = Field(description="The export that answered (as in /models and /predict).",
                         examples=["3f9a1c0b7d2e"])
    method: Literal["exact", "occlusion"] = Field(description=(
        "`exact`: the bag-of-words model's logit split into each word's share (its word term plus half of each "
        "bigram it belongs to), which add up with `bias` to the logit. `occlusion`: each word's contribution is "
        "the logit minus the logit with that word replaced by the unknown word."))
    explanations: list[Explanation] = Field(description="One per review, in input order.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "bigram_bag", "version": "3f9a1c0b7d2e", "method": "exact", "explanations": [{
            "score": 0.86, "label": "positive", "words": 3, "known_words": 3, "truncated": False, "warnings": [],
            "logit": 1.82, "bias": 0.11, "tokens": [
                {"text": "a", "start": 0, "end": 1, "contribution": 0.03, "truncated": False},
                {"text": "wonderful", "start": 2, "end": 11, "contribution": 1.52, "truncated": False},
                {"text": "film", "start": 12, "end": 16, "contribution": 0.16, "truncated": False}]}],
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
    tokenizer: str = Field(description="The tokenizer's rule: `keras`, `keras_negation` (words inside a negation's "
                           "scope read apart from the same words outside one) or `keras_scopes` (also the words a "
                           "contrast outweighs, before 'but' or after 'although') or `keras_scopes_spelling` (also "
                           "a word outside the vocabulary read as the word it most likely misspells) or "
                           "`keras_scopes_spelling_across` (also the sentence before a 'However' or 'But' that "
                           "opens a sentence) or `keras_scopes_spelling_focus` (`keras_scopes_spelling` with a "
                           "negation's scope ending at the first word it can negate, its focus) or "
                           "`keras_scopes_spelling_focus_cueless` (also the word that opens a negation read as "
                           "padding) or `keras_scopes_spelling_focus_across` (negations on their focus and "
                           "contrasts across sentences) or `keras_scopes_spelling_focus_across_cue` (also the word "
                           "that opens a negation read as a word a contrast outweighs).")
    vocabulary_sha256: str
    onnx_sha256: str = Field(description="Checksum of the loaded .onnx file.")
    onnx_bytes: int | None
    created: datetime | None = None
    training: TrainingRecord | None = Field(None, description="Training configuration and timing.")
    robustness: Robustness | None = Field(
        None, description="Accuracy on counterfactual dev pairs, the checklist suite of short reviews and single "
                          "sentences of IMDB test reviews (models/REPORT.md, Robustness).")
    robustness_score: float | None = Field(
        None, description="The mean of the test, edited-review, checklist and snippet accuracies: the best is the "
                          "default model.")
    calibration: Calibration | None = Field(
        None, description="How the export calibrates its logit (one temperature, a signed temperature or a signed "
                          "power, all keeping the sign), and the expected calibration error, Brier score and log loss "
                          "on the 25,000 test reviews before and after.")


class ModelsResponse(BaseModel):
    default: str
    models: list[ModelInfo]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    models: list[str] = Field(description="Models loaded and serving.")
    failed: dict[str, str] = Field(default_factory=dict, description="Model files not served, with the reason: "
                                   "skipped at start-up (SENTIMENT_SKIP_BROKEN_MODELS) or refused by the last reload.")


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
