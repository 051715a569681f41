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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from artifacts.tokenizer import TokenizerRule

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


class Counterfactual(_Strict):
    """Counterfactual pairs in training (training/cad.py): the IMDB part is the training reviews less the pairs'
    originals; each training pair (original and edited copy) is added ``copies`` times to the fitting side only."""

    copies: int = Field(ge=1)
    train_pairs: int = Field(ge=1, description="Training pairs used.")
    left_out_originals: int = Field(ge=0, description="IMDB training reviews taken out of the IMDB part: the "
                                    "training pairs' originals (added back with their pairs) and the dev pairs' "
                                    "(never trained on).")
    skipped_pairs: list[str] = Field([], description="Pair ids whose original is not exactly one IMDB training review.")
    made_reviews: int | None = Field(None, ge=0, description="IMDB training reviews flipped with the editors' "
                                     "substitutions (training/cad.py) and added, labelled the other way (with "
                                     "made_negations copies, also negated copies of them).")
    edited_sentences: int | None = Field(None, ge=0, description="Sentences the training pairs' editors changed "
                                         "(training/crops.py), each added counterfactual_sentences times with its "
                                         "review's label.")
    contrast_joins: int | None = Field(None, ge=0, description="Texts joining two of those sentences of opposite "
                                       "labels by a contrast ('A, but B', 'Although A, B'; training/crops.py), "
                                       "labelled as the sentence the contrast says.")


class ShortTexts(_Strict):
    """The short-text bag of a routed model (training/short_texts.py): texts of at most ``words`` words read by a
    bag trained on sentences, the others by the whole-review bag the rest of this record describes."""

    words: int = Field(ge=1, description="The longest text, in words read, that the short-text bag scores.")
    fit_sentences: int = Field(ge=1, description="Sentences its validation run fitted on: every sentence of the "
                               "reviews the whole-review bag's validation run fitted on, and the editors' changed "
                               "sentences cad_sentence_copies times.")
    cad_sentence_copies: int = Field(ge=0)
    validation_sentences: int = Field(ge=1, description="The held-out reviews' sentences but their first and last, "
                                      "which chose its epoch.")
    best_epoch: int = Field(ge=1)
    best_val_accuracy: float = Field(ge=0, le=1)
    seconds: float = Field(ge=0)
    refit_sentences: int | None = Field(None, ge=1, description="With a refit: the sentences the shipped short-text "
                                        "bag was trained on again for best_epoch epochs (those of the refit's "
                                        "reviews, and the editors' sentences).")
    refit_seconds: float | None = Field(None, ge=0)


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
    counterfactual: Counterfactual | None = Field(
        None, description="Counterfactual pairs added to the training reviews; train_reviews counts the IMDB part.")
    short_texts: ShortTexts | None = Field(None, description="With a routed model: its short-text bag's training.")


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


class HeldOutFigures(_Strict):
    """Out-of-fold figures of one calibration method on the held-out reviews."""

    log_loss: float = Field(ge=0, description="Mean binary cross-entropy of the out-of-fold scores (from the logit, "
                            "unclipped).")
    ece: float = Field(ge=0, le=1, description="Expected calibration error of the out-of-fold scores, 15 bins.")


class CalibrationSelection(_Strict):
    """How the method was chosen, on the held-out reviews only (never the test set): k-fold cross-validation,
    each fold scored with the map (temperature(s), power(s)) fitted on the other folds."""

    folds: int = Field(ge=2)
    seed: int = Field(description="Seed of the permutation that dealt the held-out reviews into folds.")
    signed_allowed: bool = Field(description="Whether the non-linear maps (signed temperature, signed power) were "
                                 "allowed: False when the model's explanation needs its logit linear in its terms "
                                 "(the bag family's exact shares): it keeps one temperature.")
    single: HeldOutFigures = Field(description="One temperature, out of fold.")
    signed: HeldOutFigures = Field(description="A signed temperature, out of fold.")
    signed_power: HeldOutFigures | None = Field(
        None, description="A signed power, out of fold (absent from selections made before it was a candidate).")
    rule: str = Field("the allowed method with the lowest out-of-fold log loss (a tie goes to the simpler one)",
                      description="How the figures chose the method.")


class Calibration(_Strict):
    """Temperature scaling, inside the exported graph. ``temperature``: score = sigmoid(logit / T), with T the
    graph's ``temperature`` initializer. ``signed_temperature``: score = sigmoid(logit / T+) for a logit >= 0 and
    sigmoid(logit / T-) for a logit < 0, with T+ and T- the graph's ``temperature_positive`` and
    ``temperature_negative`` initializers. ``signed_power``: score = sigmoid(sign(z) * max((|z| / T) ** p,
    |z| / e^7)) for the logit z, with T+ and p+ (``power_positive``) for z >= 0 and T- and p- (``power_negative``)
    for z < 0 (the floor |z| / e^7 keeps a tiny negative logit off a score of exactly 0.5). Each keeps the sign of
    every logit and the order of the scores."""

    method: Literal["temperature", "signed_temperature", "signed_power"] = "temperature"
    temperature: float | None = Field(
        None, gt=0, description="Method `temperature` only: equal to the ONNX graph's `temperature` initializer.")
    temperature_positive: float | None = Field(
        None, gt=0, description="Methods `signed_temperature` and `signed_power` only: divides the logits (their "
        "magnitude) >= 0; equal to the graph's `temperature_positive` initializer.")
    temperature_negative: float | None = Field(
        None, gt=0, description="Methods `signed_temperature` and `signed_power` only: divides the logits (their "
        "magnitude) < 0; equal to the graph's `temperature_negative` initializer.")
    power_positive: float | None = Field(
        None, gt=0, description="Method `signed_power` only: the exponent of |logit| / T+ for the logits >= 0; "
        "equal to the graph's `power_positive` initializer.")
    power_negative: float | None = Field(
        None, gt=0, description="Method `signed_power` only: the exponent of |logit| / T- for the logits < 0; "
        "equal to the graph's `power_negative` initializer.")
    selection: CalibrationSelection | None = Field(
        None, description="The held-out comparison that chose the method (absent from calibrations made before "
        "there was a choice).")
    fitted_on: str = Field(description="Which reviews the temperature(s) were fitted on (never test reviews).")
    reviews: int = Field(ge=1, description="How many reviews the temperature was fitted on.")
    bins: int = Field(15, ge=1, description="Equal-width score bins of the expected calibration error.")
    test_reviews: int = Field(ge=1, description="Reviews `before` and `after` were measured on.")
    before: CalibrationMetrics = Field(description="The uncalibrated export (float32 sigmoid), on the test reviews.")
    after: CalibrationMetrics = Field(description="The calibrated export, on the test reviews.")
    reliability_diagram: str | None = Field(None, description="PNG in the model's folder: before and after.")

    @model_validator(mode="after")
    def _temperatures_fit_the_method(self) -> Calibration:
        signed = (self.temperature_positive, self.temperature_negative)
        powers = (self.power_positive, self.power_negative)
        if self.method == "temperature":
            if self.temperature is None or signed != (None, None) or powers != (None, None):
                raise ValueError("method 'temperature' needs `temperature` and none of `temperature_positive`, "
                                 "`temperature_negative`, `power_positive`, `power_negative`")
            return self
        if None in signed or self.temperature is not None:
            raise ValueError(f"method {self.method!r} needs both `temperature_positive` and `temperature_negative`, "
                             "and no `temperature`")
        if self.method == "signed_power" and None in powers:
            raise ValueError("method 'signed_power' needs both `power_positive` and `power_negative`")
        if self.method == "signed_temperature" and powers != (None, None):
            raise ValueError("method 'signed_temperature' takes no `power_positive` or `power_negative`")
        if self.selection is not None:
            if not self.selection.signed_allowed:
                raise ValueError(f"method {self.method!r} was chosen although its selection did not allow it")
            if self.method == "signed_power" and self.selection.signed_power is None:
                raise ValueError("method 'signed_power' was chosen by a selection that did not compare it")
        return self


class Robustness(_Strict):
    """How the model does on reviews unlike the IMDB test set's (training/robustness.py). Accuracies at 0.5."""

    cad_dev_pairs: int = Field(ge=1, description="Counterfactual dev pairs: an IMDB training review and its minimally "
                               "edited, label-flipped copy (Kaushik et al. 2020).")
    cad_dev_original: float = Field(ge=0, le=1, description="Accuracy on the pairs' original reviews.")
    cad_dev_edited: float = Field(ge=0, le=1, description="Accuracy on the pairs' edited reviews.")
    cad_dev_pair_consistency: float = Field(ge=0, le=1, description="Share of pairs with both reviews right.")
    cad_dev_originals_in_training: bool = Field(
        description="Whether the dev pairs' original reviews were among the model's training reviews.")
    checklist_reviews: int = Field(ge=1, description="Templated short reviews (training/checklist.jsonl).")
    checklist: float = Field(ge=0, le=1, description="Accuracy on the checklist suite.")
    checklist_by_category: dict[str, float] = Field(description="Accuracy per checklist category.")
    snippet_reviews: int = Field(ge=1, description="IMDB test reviews whose first and last sentences were scored.")
    snippets_first_sentence: float = Field(ge=0, le=1, description="Accuracy on each review's first sentence alone, "
                                           "labelled by its review.")
    snippets_last_sentence: float = Field(ge=0, le=1, description="Accuracy on each review's last sentence alone.")


class ExportRecord(_Strict):
    """Exact rewrites applied to the exported graph after tf2onnx (training/fold.py): the same scores, faster."""

    rewrites: list[str] = Field(description="The rewrites applied, in order: `fold_embedding_conv` (the embedding "
                                "folded into the first convolution's per-tap tables), `native_gru` (a Keras GRU's "
                                "Loop replaced by ONNX's GRU operator).")
    before_sha256: str | None = Field(None, pattern=SHA256_PATTERN, description="Checksum of the graph the rewrites "
                                      "were applied to, when they were applied to a written export.")
    max_abs_diff: float | None = Field(None, ge=0, description="Largest |difference| between the rewritten graph's "
                                       "outputs and the graph's before, on `reviews` test reviews.")
    reviews: int | None = Field(None, ge=1, description="How many test reviews `max_abs_diff` was measured on.")


class ImportRecord(_Strict):
    """Where an imported model came from (``python -m training.import_model``): a Keras model trained elsewhere
    (R's keras, tf.keras, Keras 3), exported by the project's exporter. It has no training record."""

    source: str = Field(description="The Keras file's name, as given.")
    source_sha256: str = Field(pattern=SHA256_PATTERN, description="Checksum of the Keras file.")
    format: Literal["keras", "h5"] = Field(description="`keras`: a Keras 3 `.keras` archive; `h5`: a legacy HDF5 "
                                           "file (what Keras 2, tf.keras and R's `save_model_hdf5` write).")
    saved_by_keras: str | None = Field(None, description="The Keras version that wrote the file, as it records it.")
    trained_with: str | None = Field(None, description="The loss the file records the model was compiled with.")
    output: Literal["logits", "probability"] = Field(description="What the model's own output is: `logits` (a "
                                                     "linear last layer), `probability` (a sigmoid, or a linear last "
                                                     "layer trained with binary cross-entropy on its output).")
    sigmoid_added: bool = Field(description="Whether the export adds a sigmoid after the model's output (logits).")
    clipped: bool = Field(False, description="Whether the export clips the output to [1e-7, 1 - 1e-7], as binary "
                          "cross-entropy reads it (a probability from a last layer without a sigmoid).")
    num_words_from: Literal["embedding", "option"] = Field(
        description="`embedding`: the embedding's input dimension; `option`: --num-words.")
    max_len_from: Literal["input", "option"] = Field(description="`input`: the model's input length; `option`: "
                                                     "--max-len.")
    word_index: str = Field(description="The word index the vocabulary was taken from (its file name).")
    word_index_sha256: str = Field(pattern=SHA256_PATTERN)
    parity_reviews: int = Field(ge=1, description="Token rows on which the export matched Keras (within 1e-5).")
    calibration_skipped: str | None = Field(None, description="Why the export is not calibrated, when it is not.")
    evaluation_skipped: str | None = Field(None, description="Why there are no test metrics, when there are none.")


class ModelMetadata(_Strict):
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="Same as the .onnx file's stem.")
    max_len: int = Field(ge=1, description="Tokens per review the model reads.")
    num_words: int = Field(gt=3, description="Vocabulary size: word indices at or above it count as unknown.")
    tokenizer: TokenizerRule = Field(
        "keras", description="The tokenizer's rule (artifacts/tokenizer.py): `keras`, Keras's own; `keras_negation`, "
        "the same words, with a known word inside a negation's scope read as its id + num_words; `keras_scopes`, "
        "also a word a contrast outweighs (before 'but', after 'although') as its id + 2 * num_words; "
        "`keras_scopes_spelling`, also a word outside the vocabulary read as the word it most likely misspells; "
        "`keras_scopes_spelling_across`, also the sentence before a contrast that opens a sentence ('However, ...') "
        "as outweighed; `keras_scopes_spelling_focus`, `keras_scopes_spelling` with a negation's scope ending at the "
        "first word it can negate, its focus ('never dull', but not 'never seen such a dull film'); "
        "`keras_scopes_spelling_focus_cueless`, also the word that opens a negation read as padding (id 0); "
        "`keras_scopes_spelling_focus_across`, negations read on their focus and contrasts across sentences; "
        "`keras_scopes_spelling_focus_across_cue`, also the word that opens a negation read as a word a contrast "
        "outweighs.")
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
    export: ExportRecord | None = Field(
        None, description="Exact rewrites of the exported graph (training/fold.py); absent: none recorded.")
    test_metrics: TestMetrics | None = Field(None, description="On the 25,000 IMDB test reviews.")
    config: dict = Field(default_factory=dict, description="The training configuration (training/presets.py).")
    training: TrainingRecord | None = None
    calibration: Calibration | None = Field(
        None, description="The temperature(s) the export divides its logit by, and their effect on the test reviews.")
    robustness: Robustness | None = Field(
        None, description="Counterfactual dev pairs, checklist suite and short snippets (training/robustness.py).")
    imported: ImportRecord | None = Field(
        None, description="A model trained elsewhere and imported (training/import_model.py); absent: trained here.")
    library_versions: dict[str, str] = {}
    created: datetime | None = None

    @property
    def version(self) -> str:
        """Names the export that answers: the first hex digits of the ONNX file's checksum."""
        return self.onnx_sha256[:VERSION_LENGTH]

    @property
    def test_accuracy(self) -> float | None:
        return None if self.test_metrics is None else self.test_metrics.accuracy

    @property
    def robustness_score(self) -> float | None:
        """What chooses the default model (issue #16): the mean of four accuracies, each of a different kind of
        review: the IMDB test set (long reviews), the counterfactual dev pairs' edited reviews (small edits that
        flip the sentiment), the checklist suite (short templated reviews) and the snippets (single sentences,
        the mean of first and last). None without robustness figures or test metrics."""
        if self.robustness is None or self.test_metrics is None:
            return None
        r = self.robustness
        snippets = (r.snippets_first_sentence + r.snippets_last_sentence) / 2
        return (self.test_metrics.accuracy + r.cad_dev_edited + r.checklist + snippets) / 4


def logit_is_linear_in_terms(config: dict) -> bool:
    """Whether a model with this training config (as the metadata records it) is a bag whose logit is the bias plus
    the mean of one term per word and per n-gram: the ``bag`` family with plain mean pooling. Its exact explanation
    (``service/explaining.py: BagShares``) relies on it, so its calibration must keep the logit linear
    (``training/calibrate.py``). A bag with learned saliences weighs its terms by the review's other words."""
    return config.get("family") == "bag" and config.get("bag_pooling", "mean") == "mean"


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
