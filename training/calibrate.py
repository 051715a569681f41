"""Temperature scaling inside the exported ONNX graph.

    python -m training.calibrate [--models NAME ...] [--out models/] [--data ARCHIVE]

Each exported graph ends ``... MatMul -> Add -> Sigmoid -> score``. Calibration fits one temperature T > 0 on
held-out training reviews (never the test set) by minimising their log loss, and rewrites the end of the graph:

    logit (float32) -> Cast to double -> Div by ``temperature`` (a float64 initializer) -> output ``logit``
                    -> Sigmoid -> score (the same output name as before, now double [batch, 1], still the first output)

so every consumer of the file gets calibrated scores. Dividing by a positive number keeps the sign of every
logit, so every label, the accuracy and the ROC AUC stay as they were; there is no bias term. The sigmoid is
computed in float64: a float32 sigmoid is exactly 1.0 above a logit of about 16.6 (and exactly 0 below about
-88, with values that lose all precision long before), a float64 one only beyond about +-36.7.

The held-out reviews are rebuilt from the metadata's training record, exactly as training drew them: the
training reviews in the dataset's order, shuffled by ``np.random.default_rng(seed).permutation(n)``, and the
last ``floor(n * (1 - split))``-th onward taken, as Keras 3's ``validation_split`` does
(``keras/src/trainers/data_adapters/array_slicing.py: train_validation_split``). For most models that is the
validation split of the kept seed, the reviews that chose the epochs; for a preset refitted after validation
(``bigram_bag``) it is the part of the same shuffle that the refit held out for this purpose.

A graph is calibrated once: ``calibrated`` refuses a graph that already has a ``temperature`` initializer
(calibrating twice would divide twice); re-export the model to fit a new temperature. Without ``--models``,
the command calibrates every model in ``--out`` that has no temperature yet and leaves the others alone.

For each model the command checks on the test reviews that every label and the accuracy are unchanged, that
the new scores are sigmoid(old logit / T) within 1e-6 and that no score is exactly 0 or 1 (it fails loudly
otherwise), then writes the new ONNX file, the metadata (checksum, size, test metrics of the calibrated scores
and a ``calibration`` block with the before/after figures), ``<name>_reliability.png`` and REPORT.md.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import minimize_scalar
from scipy.special import expit

from artifacts.metadata import (
    Calibration,
    CalibrationMetrics,
    MetadataError,
    ModelMetadata,
    TrainingRecord,
    read_metadata,
    write_metadata,
)

TEMPERATURE = "temperature"  # the float64 initializer the logit is divided by
LOGIT_OUTPUT = "logit"  # the calibrated logit, the graph's second output
_LOGIT_DOUBLE = "calibration/logit_float64"  # the raw logit, cast to double
ECE_BINS = 15
LOG_LOSS_EPSILON = 1e-7  # scores are clipped to [eps, 1 - eps] for the log loss, as Keras's binary cross-entropy does
PARITY_TOLERANCE = 1e-6  # |new score - sigmoid(old logit / T)|
LOG_TEMPERATURE_BOUNDS = (-7.0, 7.0)  # T from about 0.001 to 1,100
BATCH_SIZE = 512

log = logging.getLogger("training")


class CalibrationError(Exception):
    """The graph cannot be calibrated, or the calibrated graph would change what it must not change."""


# --- the held-out reviews -------------------------------------------------------------------------------------


def shuffled_order(seed: int, reviews: int) -> np.ndarray:
    """The order a seeded training run sees the training reviews in (``training.fit.seeded_model``)."""
    return np.random.default_rng(seed).permutation(reviews)


def held_out_indices(reviews: int, seed: int, split: float) -> np.ndarray:
    """Indices (into the training reviews, in the dataset's order) of the last ``split`` of the seed's shuffle:
    the reviews Keras 3 holds out for ``validation_split=split`` when the shuffled reviews are passed to fit."""
    split_at = int(math.floor(reviews * (1.0 - split)))  # as keras's train_validation_split computes it
    if not 0 < split_at < reviews:
        raise CalibrationError(f"a split of {split} leaves no reviews on one side of {reviews}")
    return shuffled_order(seed, reviews)[split_at:]


@dataclass(frozen=True)
class HeldOut:
    indices: np.ndarray  # into the training reviews, in the dataset's order
    description: str  # for the metadata's ``fitted_on``


def calibration_reviews(training: TrainingRecord) -> HeldOut:
    """The training reviews that no weight of the shipped model was fitted on, from its training record."""
    refit = training.refit_on_all_training_reviews
    if refit is None:
        indices = held_out_indices(training.train_reviews, training.seed, training.validation_split)
        return HeldOut(indices, f"validation split of seed {training.seed} (the last {training.validation_split:.0%} "
                                f"of its shuffle, which chose the epochs), {len(indices):,} reviews")
    if not refit.held_out_split:
        raise CalibrationError(
            f"the model was refitted on all {refit.train_reviews:,} training reviews: no held-out review is left "
            "to fit a temperature on; retrain it with the pipeline, whose refit holds out a calibration split")
    indices = held_out_indices(training.train_reviews, training.seed, refit.held_out_split)
    if len(indices) != refit.held_out_reviews:
        raise CalibrationError(f"the refit held out {refit.held_out_reviews} reviews, the record's split gives "
                               f"{len(indices)}")
    return HeldOut(indices, f"reviews held out of the refit (the last {refit.held_out_split:.0%} of seed "
                            f"{training.seed}'s shuffle), {len(indices):,} reviews")


# --- the graph ---------------------------------------------------------------------------------------------------


def _final_sigmoid(graph: onnx.GraphProto) -> onnx.NodeProto:
    """The Sigmoid node that produces the graph's first output (the score)."""
    if not graph.output:
        raise CalibrationError("the graph has no output")
    score = graph.output[0].name
    producers = [node for node in graph.node if score in node.output]
    if len(producers) != 1 or producers[0].op_type != "Sigmoid":
        found = producers[0].op_type if producers else "no node"
        raise CalibrationError(f"the graph's output {score!r} is produced by {found}, not by a Sigmoid")
    return producers[0]


def temperature_of(onnx_bytes: bytes | onnx.ModelProto) -> float | None:
    """The graph's temperature, or None when it is not calibrated."""
    model = onnx_bytes if isinstance(onnx_bytes, onnx.ModelProto) else onnx.load_from_string(onnx_bytes)
    for initializer in model.graph.initializer:
        if initializer.name == TEMPERATURE:
            return float(numpy_helper.to_array(initializer))
    return None


def _with_logit_output(onnx_bytes: bytes) -> tuple[bytes, str]:
    """The graph with its final Sigmoid's input exposed as an output (when it is not one already), and its name."""
    model = onnx.load_from_string(onnx_bytes)
    logit = _final_sigmoid(model.graph).input[0]
    if logit not in {output.name for output in model.graph.output}:
        known = {info.name: info.type.tensor_type.elem_type for info in model.graph.value_info}
        model.graph.output.append(helper.make_tensor_value_info(logit, known.get(logit, TensorProto.FLOAT), None))
    return model.SerializeToString(), logit


def _session(onnx_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def scores_and_logits(onnx_bytes: bytes, tokens: np.ndarray, batch_size: int = BATCH_SIZE
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The graph's scores (first output, in its own dtype) and logits (its final Sigmoid's input, float64)
    for ``tokens`` (int32 [n, max_len]), in one pass."""
    exposed, logit = _with_logit_output(onnx_bytes)
    session = _session(exposed)
    names = [output.name for output in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    scores, logits = [], []
    for start in range(0, len(tokens), batch_size):
        outputs = dict(zip(names, session.run(None, {input_name: tokens[start:start + batch_size].astype(np.int32)}),
                           strict=True))
        scores.append(outputs[names[0]].reshape(-1))
        logits.append(outputs[logit].reshape(-1).astype(np.float64))
    return np.concatenate(scores), np.concatenate(logits)


def logits(onnx_bytes: bytes, tokens: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The graph's logits (its final Sigmoid's input) for ``tokens``, as float64: the raw logit of an
    uncalibrated graph, the calibrated one (already divided by the temperature) of a calibrated graph."""
    return scores_and_logits(onnx_bytes, tokens, batch_size)[1]


def calibrated(onnx_bytes: bytes, temperature: float) -> bytes:
    """The graph with its logit divided by ``temperature`` before the sigmoid, in float64 (see the module's
    docstring). The input is unchanged; the score output keeps its name and comes first, now double; the
    calibrated logit is a second output, ``logit``. Refuses a graph that is already calibrated."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise CalibrationError(f"the temperature must be a positive number, not {temperature}")
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    already = temperature_of(model)
    if already is not None:
        raise CalibrationError(f"the graph is already calibrated (temperature {already:.6g}); calibrate the raw "
                               "export instead of dividing twice")
    sigmoid = _final_sigmoid(graph)
    score = graph.output[0]
    if score.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise CalibrationError(f"the score output {score.name!r} is not float32")
    taken = ({name for node in graph.node for name in (*node.input, *node.output)}
             | {info.name for info in (*graph.input, *graph.output)} | {init.name for init in graph.initializer})
    clashes = sorted(taken & {TEMPERATURE, LOGIT_OUTPUT, _LOGIT_DOUBLE})
    if clashes:
        raise CalibrationError(f"the graph already uses the names {clashes}")
    raw_logit = sigmoid.input[0]
    position = list(graph.node).index(sigmoid)
    graph.node.insert(position, helper.make_node("Div", [_LOGIT_DOUBLE, TEMPERATURE], [LOGIT_OUTPUT],
                                                 name="calibration/divide_by_temperature"))
    graph.node.insert(position, helper.make_node("Cast", [raw_logit], [_LOGIT_DOUBLE], to=TensorProto.DOUBLE,
                                                 name="calibration/cast_to_double"))
    sigmoid.input[0] = LOGIT_OUTPUT
    graph.initializer.append(numpy_helper.from_array(np.array(temperature, dtype=np.float64), TEMPERATURE))
    score.type.tensor_type.elem_type = TensorProto.DOUBLE
    logit_output = graph.output.add()
    logit_output.CopyFrom(score)
    logit_output.name = LOGIT_OUTPUT
    # value_info recorded for the score by the converter would now contradict the graph
    stale = [info for info in graph.value_info if info.name in (score.name, LOGIT_OUTPUT, _LOGIT_DOUBLE)]
    for info in stale:
        graph.value_info.remove(info)
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --- fitting and measuring ---------------------------------------------------------------------------------------


def _mean_log_loss(logits_: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(logit / T), computed from the logit (no clipping, no overflow)."""
    scaled = logits_ / temperature
    return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))


def fit_temperature(logits_: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the log loss of sigmoid(logit / T) on (logits, labels): a bounded search over
    log T (the loss is convex in 1/T, so unimodal in log T)."""
    logits_ = np.asarray(logits_, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(logits_) != len(labels) or len(labels) == 0:
        raise CalibrationError(f"{len(logits_)} logits for {len(labels)} labels")
    result = minimize_scalar(lambda log_t: _mean_log_loss(logits_, labels, math.exp(log_t)),
                             bounds=LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-9})
    return float(math.exp(result.x))


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """Bins of equal width over the score (bin k holds [k/bins, (k+1)/bins), the last also 1.0); the mean over
    reviews of |positive fraction - mean score| of each review's bin."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    which = np.clip(np.floor(scores * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    gaps = np.abs(np.bincount(which, weights=labels, minlength=bins) - np.bincount(which, weights=scores,
                                                                                      minlength=bins))
    return float(gaps.sum() / counts.sum())


def top_label_calibration_error(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> float:
    """Guo et al.'s (2017) ECE: the same bins over the confidence in the predicted label, max(score, 1 - score),
    against whether that label is right. Errors of opposite sign at score p and 1 - p share a bin and cancel,
    so it is never above ``expected_calibration_error`` by much and often well below it."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    confidence = np.maximum(scores, 1 - scores)
    correct = ((scores >= 0.5) == (labels == 1)).astype(np.float64)
    return expected_calibration_error(correct, confidence, bins)


def calibration_metrics(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> dict[str, float]:
    """ECE over the score (``bins`` equal-width bins; the target's figure), Guo et al.'s top-label ECE, Brier
    score and log loss (scores clipped to [1e-7, 1 - 1e-7]) of the scores, plus their smallest and largest value."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    clipped = np.clip(scores, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    return {
        "ece": expected_calibration_error(labels, scores, bins),
        "ece_top_label": top_label_calibration_error(labels, scores, bins),
        "brier": float(np.mean((scores - labels) ** 2)),
        "log_loss": float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))),
        "min_score": float(scores.min()),
        "max_score": float(scores.max()),
    }


def reliability_curve(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean score, positive fraction, number of reviews."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    which = np.clip(np.floor(scores * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    mean_score = np.bincount(which, weights=scores, minlength=bins)[filled] / counts[filled]
    positive = np.bincount(which, weights=labels, minlength=bins)[filled] / counts[filled]
    return mean_score, positive, counts[filled]


def plot_reliability(labels: np.ndarray, before: np.ndarray, after: np.ndarray, title: str, path: Path,
                     bins: int = ECE_BINS) -> None:
    """The reliability diagram: positive fraction against mean score per bin, before and after, with the
    diagonal of perfect calibration; below, how many reviews fall in each bin."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, (curve_axis, count_axis) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    curve_axis.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for scores, style, label in ((before, "o-", "before"), (after, "s-", "after (temperature)")):
        mean_score, positive, counts = reliability_curve(labels, scores, bins)
        ece = expected_calibration_error(labels, scores, bins)
        curve_axis.plot(mean_score, positive, style, label=f"{label}: ECE {ece:.4f}")
        count_axis.hist(np.asarray(scores, dtype=np.float64), bins=edges, histtype="step", linewidth=1.5,
                        label=label)
    curve_axis.set_ylabel("fraction of positive reviews")
    curve_axis.set_xlim(0, 1)
    curve_axis.set_ylim(0, 1)
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(loc="upper left")
    count_axis.set_xlabel(f"score ({bins} equal-width bins)")
    count_axis.set_ylabel("reviews")
    count_axis.set_yscale("log")
    count_axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- one model, end to end -------------------------------------------------------------------------------------


@dataclass
class Calibrated:
    """A calibrated export and what was measured on it."""

    onnx_bytes: bytes
    temperature: float
    test_scores: np.ndarray  # float64, of the calibrated graph
    before_scores: np.ndarray  # of the uncalibrated graph
    calibration: Calibration


def calibrate_export(name: str, onnx_bytes: bytes, fit_tokens: np.ndarray, fit_labels: np.ndarray, fitted_on: str,
                     test_tokens: np.ndarray, test_labels: np.ndarray, out: Path | None = None) -> Calibrated:
    """Fit the temperature on the held-out reviews, rewrite the graph, and check the rewrite on the test
    reviews: every label unchanged, scores = sigmoid(old logit / T) within PARITY_TOLERANCE, no score exactly
    0 or 1 (CalibrationError otherwise). Writes ``<name>_reliability.png`` into ``out`` when it is given."""
    fit_labels = np.asarray(fit_labels).reshape(-1)
    test_labels = np.asarray(test_labels).reshape(-1)
    _, fit_logits = scores_and_logits(onnx_bytes, fit_tokens)
    temperature = fit_temperature(fit_logits, fit_labels)
    log.info("%s: temperature %.4f fitted on %s; their log loss %.4f -> %.4f", name, temperature, fitted_on,
             _mean_log_loss(fit_logits, fit_labels, 1.0), _mean_log_loss(fit_logits, fit_labels, temperature))
    new_bytes = calibrated(onnx_bytes, temperature)
    before, raw_logits = scores_and_logits(onnx_bytes, test_tokens)
    after, new_logits = scores_and_logits(new_bytes, test_tokens)
    check_rewrite(before, raw_logits, after, new_logits, temperature)
    diagram = None
    if out is not None:
        diagram = f"{name}_reliability.png"
        plot_reliability(test_labels, before, after, f"{name}: reliability on {len(test_labels):,} test reviews "
                         f"(T = {temperature:.3f})", out / diagram)
    calibration = Calibration(
        temperature=temperature, fitted_on=fitted_on, reviews=len(fit_labels), bins=ECE_BINS,
        test_reviews=len(test_labels),
        before=CalibrationMetrics(**calibration_metrics(test_labels, before)),
        after=CalibrationMetrics(**calibration_metrics(test_labels, after)),
        reliability_diagram=diagram,
    )
    log.info("%s test: ECE %.4f -> %.4f, Brier %.4f -> %.4f, log loss %.4f -> %.4f, scores in [%.3g, %.3g]",
             name, calibration.before.ece, calibration.after.ece, calibration.before.brier, calibration.after.brier,
             calibration.before.log_loss, calibration.after.log_loss, calibration.after.min_score,
             calibration.after.max_score)
    return Calibrated(new_bytes, temperature, after, before, calibration)


def check_rewrite(before: np.ndarray, raw_logits: np.ndarray, after: np.ndarray, new_logits: np.ndarray,
                  temperature: float) -> None:
    """The calibrated graph changes the scores by the temperature only (CalibrationError otherwise)."""
    if after.dtype != np.float64:
        raise CalibrationError(f"the calibrated scores are {after.dtype}, not float64")
    changed = int(np.sum((before >= 0.5) != (after >= 0.5)))
    if changed:
        raise CalibrationError(f"calibration would change {changed} labels")
    difference = float(np.max(np.abs(after - expit(raw_logits / temperature))))
    if not difference <= PARITY_TOLERANCE:
        raise CalibrationError(f"calibrated scores differ from sigmoid(logit / T) by {difference:.3g} "
                               f"(tolerance {PARITY_TOLERANCE})")
    if not np.allclose(new_logits, raw_logits / temperature, rtol=1e-12, atol=0):
        raise CalibrationError("the graph's logit output is not the raw logit divided by the temperature")
    saturated = int(np.sum((after == 0.0) | (after == 1.0)))
    if saturated:
        raise CalibrationError(f"{saturated} calibrated scores are exactly 0 or 1 (|logit / T| above about 36.7)")


# --- the command -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="models to calibrate (default: every model in --out that has no temperature yet)")
    parser.add_argument("--out", type=Path, default=Path("models"),
                        help="folder of the models; rewritten in place (default: %(default)s)")
    parser.add_argument("--data", type=Path,
                        help="aclImdb_v1 .tar.gz or extracted aclImdb/ folder (default: the dataset archive the "
                             "data setting finds: $IMDB_DATA_DIR, else data/ or ../shared/data)")
    return parser.parse_args(argv)


def uncalibrated_models(out: Path) -> list[str]:
    names = []
    for path in sorted(out.glob("*.onnx")):
        metadata = path.with_suffix(".json")
        if metadata.exists() and read_metadata(metadata).calibration is None:
            names.append(path.stem)
    return names


def calibrate_model(name: str, out: Path, dataset: dict, cache: dict) -> ModelMetadata:
    """Calibrate ``out/<name>.onnx`` in place, with its metadata, from the dataset it was trained on."""
    from artifacts.loading import load_tokenizer
    from artifacts.vocabulary import file_sha256
    from training import evaluate
    from training.pipeline import sample_reviews

    metadata = read_metadata(out / f"{name}.json")
    already = temperature_of((out / f"{name}.onnx").read_bytes())
    if metadata.calibration is not None or already is not None:
        raise CalibrationError(f"{name} is already calibrated (temperature {already}); re-export it to fit a new "
                               "temperature rather than dividing twice")
    if metadata.training is None or metadata.test_metrics is None:
        raise CalibrationError(f"{name}: the metadata has no training record or test metrics to rebuild the "
                               "held-out reviews from and check against")
    training = metadata.training
    held_out = calibration_reviews(training)
    # the reviews the pipeline used: all of them, or the balanced sample a --limit run took
    total = len(dataset["train"])
    limit = None if training.train_reviews == total else training.train_reviews
    if limit is not None and training.train_reviews > total:
        raise CalibrationError(f"{name} was trained on {training.train_reviews} reviews, the data has {total}")
    reviews = sample_reviews(dataset, limit)
    if len(reviews.test_texts) != training.test_reviews:
        raise CalibrationError(f"{name} was tested on {training.test_reviews} reviews, the data gives "
                               f"{len(reviews.test_texts)}")
    tokenizer = load_tokenizer(metadata, out, cache.setdefault("tokenizers", {}))
    key = (id(tokenizer), limit)
    if key not in cache:  # models with one vocabulary and length share the tokenized test reviews
        cache[key] = tokenizer.encode_batch(reviews.test_texts)
    x_test = cache[key]
    x_fit = tokenizer.encode_batch([reviews.train_texts[i] for i in held_out.indices])
    y_fit = np.asarray(reviews.y_train)[held_out.indices]

    onnx_path = out / f"{name}.onnx"
    if file_sha256(onnx_path) != metadata.onnx_sha256:
        raise CalibrationError(f"{onnx_path}: sha256 does not match the checksum in {name}.json")
    result = calibrate_export(name, onnx_path.read_bytes(), x_fit, y_fit, held_out.description, x_test,
                              reviews.test_labels, out)
    metrics = evaluate.test_metrics(reviews.test_labels, result.test_scores)
    recorded = metadata.test_metrics
    if (metrics.accuracy, metrics.confusion_matrix) != (recorded.accuracy, recorded.confusion_matrix):
        raise CalibrationError(f"{name}: the calibrated export's test accuracy {metrics.accuracy} (confusion "
                               f"{metrics.confusion_matrix}) is not the recorded {recorded.accuracy} "
                               f"({recorded.confusion_matrix})")
    temporary = onnx_path.with_suffix(".onnx.tmp")
    temporary.write_bytes(result.onnx_bytes)
    temporary.replace(onnx_path)
    updated = ModelMetadata.model_validate({
        **metadata.model_dump(), "onnx_sha256": file_sha256(onnx_path), "onnx_bytes": onnx_path.stat().st_size,
        "test_metrics": metrics.model_dump(), "calibration": result.calibration.model_dump(),
    })
    write_metadata(updated, out / f"{name}.json")
    log.info("%s: calibrated export written to %s (version %s -> %s)", name, onnx_path, metadata.version,
             updated.version)
    return updated


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from training.data import DataError, dataset_path, load_imdb, require_data_file
    from training.pipeline import write_report

    try:
        names = args.models or uncalibrated_models(args.out)
        missing = [name for name in names if not (args.out / f"{name}.onnx").exists()]
        if missing:
            raise CalibrationError(f"no model named {', '.join(missing)} in {args.out}")
        if not names:
            log.info("every model in %s is calibrated already", args.out)
            return 0
        data = args.data if args.data is not None else require_data_file(dataset_path())
        dataset = load_imdb(data)
        cache: dict = {}
        for name in names:
            calibrate_model(name, args.out, dataset, cache)
        write_report(args.out)
    except (CalibrationError, MetadataError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
