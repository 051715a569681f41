"""Calibration inside the exported ONNX graph: one temperature, a signed temperature, or a signed power.

    python -m training.calibrate [--models NAME ...] [--out models/] [--data ARCHIVE] [--recalibrate]

Each exported graph ends ``... MatMul -> Add -> Sigmoid -> score``. Calibration maps the logit z by a strictly
increasing, sign-keeping function fitted on held-out training reviews (never the test set) by minimising their
log loss, and rewrites the end of the graph. With one temperature T > 0 (method ``temperature``):

    logit (float32) -> Cast to double -> Div by ``temperature`` (a float64 initializer) -> output ``logit``
                    -> Clip to +-SCORE_LOGIT_BOUND -> Sigmoid -> score (the same output name as before, now double
                    [batch, 1], still the first output)

(Exports calibrated before 2026-11-30 have no Clip; ``uncalibrated`` restores both.)

With a signed temperature (method ``signed_temperature``), a logit >= 0 is divided by T+ and a logit < 0 by T-
(both > 0), so a model that calls too many reviews positive (or negative) can be made less sure on that side
only:

    logit (float32) -> Cast to double -> Div by Where(Less(logit, 0), ``temperature_negative``,
                    ``temperature_positive``) -> output ``logit`` -> Sigmoid -> score

With a signed power (method ``signed_power``), each side also gets an exponent p > 0:

    z' = sign(z) * max((|z| / T) ** p, |z| / FLOOR_TEMPERATURE),   T, p = T+, p+ for z >= 0 and T-, p- for z < 0

    logit (float32) -> Cast to double -> Abs -> Div by Where(Less(z, 0), ``temperature_negative``,
                    ``temperature_positive``) -> Pow by Where(Less(z, 0), ``power_negative``, ``power_positive``)
                    -> Max with Abs / FLOOR_TEMPERATURE -> Mul by Sign(z) -> output ``logit`` -> Sigmoid -> score

p > 1 makes a side's scores near 0.5 less sure and its extreme scores surer (``conv_lstm``: overconfident at
0.6-0.85, underconfident above 0.93, which one divisor cannot follow), p < 1 the reverse; p = 1 is the signed
temperature. The floor (FLOOR_TEMPERATURE = e^7, the largest temperature the fit allows) keeps the map from
flattening at 0 when p > 1: without it a negative logit of about -1e-7 would map below 2e-16 in magnitude, where
the float64 sigmoid is exactly 0.5 and the label would turn positive; with the exponents fitted in practice it
binds only where scores are within 1e-5 of 0.5. p is bounded to [1/4, 4] (LOG_POWER_BOUNDS).

Every consumer of the file gets calibrated scores. Each map keeps the sign of every logit, so every label and
the accuracy stay as they were (but for a logit within float rounding of 0, whose score rounds to 0.5 from either
side: the command checks every test label); each is continuous and strictly increasing in the logit (0 maps to
0 from both sides), so the order of the scores and the ROC AUC stay too; none has a bias term (a bias would move
the 0.5 threshold and change labels). The map and the sigmoid are computed in float64: a float32 sigmoid is
exactly 1.0 above a logit of about 16.6 (and exactly 0 below about -88, with values that lose all precision long
before), a float64 one (onnxruntime's, symmetric) only beyond about +-36.7; with p > 1 a side reaches that at a
raw logit of T * 36.7 ** (1 / p) (8.4 for ``conv_lstm``'s positive side, whose test logits stay within 3.7).
The log loss of a review depends on its side's parameters alone, so each side is fitted separately: the signed
temperature as one temperature per side, the signed power by L-BFGS-B over (log T, log p) per side, starting
from that side's signed temperature and p = 1 (so it never fits its reviews worse than the signed temperature).

Which method a model gets is decided on the held-out reviews alone: ``SELECTION_FOLDS``-fold cross-validation
(the reviews dealt into folds by a seeded permutation) scores each fold with each method fitted on the other
folds, and the allowed method with the lowest out-of-fold log loss is taken (a tie goes to the simpler method);
the three out-of-fold figures (log loss and ECE) go into the metadata's ``calibration.selection``. The caller
says whether the non-linear maps (signed temperature, signed power) are allowed at all (``allow_signed``, by
default not): a bag that averages its terms keeps one temperature, because its exact explanation
(``service/explaining.py: BagShares``) needs the logit linear in its terms, which a sign-dependent map breaks
(``signed_allowed`` tells from a model's config).

The held-out reviews are rebuilt from the metadata's training record, exactly as training drew them: the
training reviews in the dataset's order, shuffled by ``np.random.default_rng(seed).permutation(n)``, and the
last ``floor(n * (1 - split))``-th onward taken, as Keras 3's ``validation_split`` does
(``keras/src/trainers/data_adapters/array_slicing.py: train_validation_split``). For most models that is the
validation split of the kept seed, the reviews that chose the epochs; for a preset refitted after validation
(``bigram_bag``) it is the part of the same shuffle that the refit held out for this purpose.

A graph is calibrated once: ``calibrated`` refuses a graph that already has a temperature initializer
(calibrating twice would map twice). ``uncalibrated`` undoes the rewrite (any method) and gives back the raw
graph, float32 sigmoid and all, byte for byte, so ``--recalibrate`` can fit again from the raw logit: it restores
the raw graph of each named model (every model in ``--out`` without ``--models``), checks that the restored graph
reproduces the ``before`` figures recorded in the metadata, and calibrates it as above. Without ``--models``
and ``--recalibrate``, the command calibrates every model in ``--out`` that has no temperature yet and leaves
the others alone. The command allows the non-linear maps for every model but a mean-pooled bag.

For each model the command checks on the test reviews that every label and the accuracy are unchanged, that
the new scores are sigmoid(map(old logit)) within 1e-6 and that no score is exactly 0 or 1 (it fails loudly
otherwise), then writes the new ONNX file, the metadata (checksum, size, test metrics of the calibrated scores
and a ``calibration`` block with the method, its parameters, the held-out comparison and the before/after
figures), ``<name>_reliability.png`` and REPORT.md.
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
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit

from artifacts.metadata import (
    Calibration,
    CalibrationMetrics,
    CalibrationSelection,
    HeldOutFigures,
    MetadataError,
    ModelMetadata,
    TrainingRecord,
    logit_is_linear_in_terms,
    read_metadata,
    write_metadata,
)
from training.evaluate import THRESHOLD

TEMPERATURE = "temperature"  # the float64 initializer the logit is divided by (one temperature)
TEMPERATURE_POSITIVE = "temperature_positive"  # signed temperature: divides the logits >= 0
TEMPERATURE_NEGATIVE = "temperature_negative"  # signed temperature: divides the logits < 0
POWER_POSITIVE = "power_positive"  # signed power: the exponent of the logits >= 0 (with temperature_positive)
POWER_NEGATIVE = "power_negative"  # signed power: the exponent of the logits < 0 (with temperature_negative)
LOGIT_OUTPUT = "logit"  # the calibrated logit, the graph's second output
_PREFIX = "calibration/"  # names of the nodes and tensors the rewrite adds
_LOGIT_DOUBLE = "calibration/logit_float64"  # the raw logit, cast to double
_CAST_NODE = "calibration/cast_to_double"
_ZERO = "calibration/zero"  # float64 0, the sign test's threshold
_IS_NEGATIVE = "calibration/logit_is_negative"
_DIVISOR = "calibration/temperature_by_sign"
_EXPONENT = "calibration/power_by_sign"
_MAGNITUDE = "calibration/logit_magnitude"
_SCALED = "calibration/magnitude_over_temperature"
_POWERED = "calibration/magnitude_powered"
_SIGN = "calibration/logit_sign"
_FLOOR_TEMPERATURE = "calibration/floor_temperature"  # float64 FLOOR_TEMPERATURE, a constant of the signed power
_FLOOR = "calibration/magnitude_over_floor_temperature"
_KEPT = "calibration/magnitude_mapped"
# The sigmoid reads the calibrated logit clipped to +-SCORE_LOGIT_BOUND, so no score is exactly 0 or 1: a float64
# sigmoid rounds to exactly 1.0 beyond about 36.7, and a bag of strongly worded words reached a logit of 47 on a
# test review (robust_bag, 2026-11-30). sigmoid(36) = 1 - 2.3e-16 is still below 1. The ``logit`` output is not
# clipped (the exact /explain shares add up to it); only scores beyond 1 - 2.3e-16 (or below 2.3e-16) tie.
SCORE_LOGIT_BOUND = 36.0
_CLIPPED = "calibration/logit_clipped"
_CLIP_NODE = "calibration/clip_for_the_sigmoid"
_LOWER, _UPPER = "calibration/clip_lower", "calibration/clip_upper"
_INITIALIZERS = (TEMPERATURE, TEMPERATURE_POSITIVE, TEMPERATURE_NEGATIVE, POWER_POSITIVE, POWER_NEGATIVE, _ZERO,
                 _FLOOR_TEMPERATURE, _LOWER, _UPPER)
METHODS = ("temperature", "signed_temperature", "signed_power")  # from the simplest; a tie goes to the simpler
SELECTION_FOLDS = 5  # cross-validation folds of the held-out reviews that choose the method
SELECTION_SEED = 0  # deals the held-out reviews into folds
ECE_BINS = 15
LOG_LOSS_EPSILON = 1e-7  # scores are clipped to [eps, 1 - eps] for the log loss, as Keras's binary cross-entropy does
PARITY_TOLERANCE = 1e-6  # |new score - sigmoid(map(old logit))|
LOG_TEMPERATURE_BOUNDS = (-7.0, 7.0)  # T from about 0.001 to 1,100
# p from 1/4 to 4: a wider exponent mostly fits noise on a small held-out set (the out-of-fold selection then
# rejects it) and makes (|z| / T) ** p reach the float64 sigmoid's saturation (|z'| > 36.7) at ordinary logits
LOG_POWER_BOUNDS = (-math.log(4.0), math.log(4.0))
# The signed power is never flatter than the flattest temperature the fit allows: |z'| >= |z| / FLOOR_TEMPERATURE.
# With p > 1, (|z| / T) ** p alone sends a logit near 0 (about 1e-7 for p = 2.3) below 2e-16, where the float64
# sigmoid rounds to exactly 0.5 and a negative logit would be labelled positive (and distinct tiny logits merge).
FLOOR_TEMPERATURE = math.exp(LOG_TEMPERATURE_BOUNDS[1])
BATCH_SIZE = 512

log = logging.getLogger("training")


class CalibrationError(Exception):
    """The graph cannot be calibrated, or the calibrated graph would change what it must not change."""


# --- the held-out reviews -------------------------------------------------------------------------------------


def shuffled_order(seed: int, reviews: int) -> np.ndarray:
    """The order a seeded training run sees the training reviews in (``training.fit.seeded_model``)."""
    return np.random.default_rng(seed).permutation(reviews)


def split_point(reviews: int, split: float) -> int:
    """How many of ``reviews`` come before the held-out ``split``: floor(reviews * (1 - split)), as Keras 3's
    ``train_validation_split`` computes it; training (``training.fit``) splits there too."""
    return int(math.floor(reviews * (1.0 - split)))


def held_out_indices(reviews: int, seed: int, split: float) -> np.ndarray:
    """Indices (into the training reviews, in the dataset's order) of the last ``split`` of the seed's shuffle:
    the reviews Keras 3 holds out for ``validation_split=split`` when the shuffled reviews are passed to fit."""
    split_at = split_point(reviews, split)
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


@dataclass(frozen=True)
class SignedTemperature:
    """Divide a logit >= 0 by ``positive`` and a logit < 0 by ``negative``: keeps every logit's sign and the
    order of the logits, with no bias term."""

    positive: float
    negative: float


@dataclass(frozen=True)
class SignedPower:
    """Map a logit z to sign(z) * max((|z| / T) ** p, |z| / FLOOR_TEMPERATURE), with T and p those of z's side:
    ``temperature_positive`` and ``power_positive`` for z >= 0, ``temperature_negative`` and ``power_negative``
    for z < 0 (all > 0). Keeps every logit's sign (0 maps to 0) and is continuous and strictly increasing, with
    no bias term; p = 1 on both sides is a signed temperature. The floor only binds within about 0.01 of 0 (where
    scores are within 1e-5 of 0.5) for the exponents fitted in practice."""

    temperature_positive: float
    power_positive: float
    temperature_negative: float
    power_negative: float


# one temperature, one per sign of the logit, or a temperature and a power per sign
Temperature = float | SignedTemperature | SignedPower


def describe(temperature: Temperature) -> str:
    if isinstance(temperature, SignedPower):
        return (f"T+ = {temperature.temperature_positive:.4f}, p+ = {temperature.power_positive:.4f}, "
                f"T- = {temperature.temperature_negative:.4f}, p- = {temperature.power_negative:.4f}")
    if isinstance(temperature, SignedTemperature):
        return f"T+ = {temperature.positive:.4f}, T- = {temperature.negative:.4f}"
    return f"T = {temperature:.4f}"


def method_of(temperature: Temperature) -> str:
    """The metadata's ``calibration.method`` for a temperature."""
    if isinstance(temperature, SignedPower):
        return "signed_power"
    return "signed_temperature" if isinstance(temperature, SignedTemperature) else "temperature"


def _check_temperature(temperature: Temperature) -> None:
    if isinstance(temperature, SignedPower):
        values = {"temperature": (temperature.temperature_positive, temperature.temperature_negative),
                  "power": (temperature.power_positive, temperature.power_negative)}
    elif isinstance(temperature, SignedTemperature):
        values = {"temperature": (temperature.positive, temperature.negative)}
    else:
        values = {"temperature": (temperature,)}
    for what, numbers in values.items():
        for value in numbers:
            if not (math.isfinite(value) and value > 0):
                raise CalibrationError(f"the {what} must be a positive number, not {value}")


def scaled_logits(logits_: np.ndarray, temperature: Temperature) -> np.ndarray:
    """The logits mapped as the calibrated graph maps them (float64): divided by T, or by T+ where the logit is
    >= 0 and by T- where it is < 0; for a signed power, sign(z) * max((|z| / T) ** p, |z| / FLOOR_TEMPERATURE)
    with T and p of z's side."""
    logits_ = np.asarray(logits_, dtype=np.float64)
    if isinstance(temperature, SignedPower):
        negative = logits_ < 0
        divisor = np.where(negative, temperature.temperature_negative, temperature.temperature_positive)
        exponent = np.where(negative, temperature.power_negative, temperature.power_positive)
        magnitude = np.abs(logits_)
        return np.sign(logits_) * np.maximum((magnitude / divisor) ** exponent, magnitude / FLOOR_TEMPERATURE)
    if isinstance(temperature, SignedTemperature):
        return logits_ / np.where(logits_ < 0, temperature.negative, temperature.positive)
    return logits_ / temperature


def temperature_of(onnx_bytes: bytes | onnx.ModelProto) -> Temperature | None:
    """The graph's temperature: a float (one ``temperature`` initializer), a SignedTemperature
    (``temperature_positive`` and ``temperature_negative``), a SignedPower (those two and ``power_positive``
    and ``power_negative``), or None when it is not calibrated."""
    model = onnx_bytes if isinstance(onnx_bytes, onnx.ModelProto) else onnx.load_from_string(onnx_bytes)
    found = {init.name: float(numpy_helper.to_array(init)) for init in model.graph.initializer
             if init.name in (TEMPERATURE, TEMPERATURE_POSITIVE, TEMPERATURE_NEGATIVE, POWER_POSITIVE,
                              POWER_NEGATIVE)}
    if TEMPERATURE in found:
        if len(found) > 1:
            raise CalibrationError(f"the graph has both a temperature and a signed temperature or power: "
                                   f"{sorted(found)}")
        return found[TEMPERATURE]
    signed = {name for name in (TEMPERATURE_POSITIVE, TEMPERATURE_NEGATIVE) if name in found}
    powers = {name for name in (POWER_POSITIVE, POWER_NEGATIVE) if name in found}
    if len(signed) == 1:
        raise CalibrationError(f"the graph has only half a signed temperature: {sorted(found)}")
    if powers and len(powers) + len(signed) < 4:
        raise CalibrationError(f"the graph has only part of a signed power: {sorted(found)}")
    if powers:
        return SignedPower(found[TEMPERATURE_POSITIVE], found[POWER_POSITIVE], found[TEMPERATURE_NEGATIVE],
                           found[POWER_NEGATIVE])
    if signed:
        return SignedTemperature(found[TEMPERATURE_POSITIVE], found[TEMPERATURE_NEGATIVE])
    return None


def _with_logit_output(onnx_bytes: bytes) -> tuple[bytes, str]:
    """The graph with its final Sigmoid's input exposed as an output (when it is not one already), and its name;
    for a calibrated graph whose sigmoid reads the clipped logit, the unclipped ``logit`` output."""
    model = onnx.load_from_string(onnx_bytes)
    logit = _final_sigmoid(model.graph).input[0]
    if logit == _CLIPPED:
        logit = LOGIT_OUTPUT
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
    uncalibrated graph, the calibrated one (already mapped by the calibration) of a calibrated graph."""
    return scores_and_logits(onnx_bytes, tokens, batch_size)[1]


def calibrated(onnx_bytes: bytes, temperature: Temperature) -> bytes:
    """The graph with its logit divided by ``temperature`` (a float, or a SignedTemperature: by T+ or T- by the
    logit's sign), or mapped by a SignedPower, before the sigmoid, in float64 (see the module's docstring). The
    input is unchanged; the score
    output keeps its name and comes first, now double; the calibrated logit is a second output, ``logit``.
    Refuses a graph that is already calibrated (``uncalibrated`` gives back the raw graph)."""
    _check_temperature(temperature)
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    already = temperature_of(model)
    if already is not None:
        raise CalibrationError(f"the graph is already calibrated ({describe(already)}); calibrate the raw "
                               "export instead of dividing twice (uncalibrated() restores it)")
    sigmoid = _final_sigmoid(graph)
    score = graph.output[0]
    if score.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise CalibrationError(f"the score output {score.name!r} is not float32")
    taken = ({name for node in graph.node for name in (*node.input, *node.output)}
             | {info.name for info in (*graph.input, *graph.output)} | {init.name for init in graph.initializer})
    clashes = sorted(taken & {*_INITIALIZERS, LOGIT_OUTPUT, _LOGIT_DOUBLE, _IS_NEGATIVE, _DIVISOR, _EXPONENT,
                              _MAGNITUDE, _SCALED, _POWERED, _SIGN, _FLOOR, _KEPT, _CLIPPED})
    if clashes:
        raise CalibrationError(f"the graph already uses the names {clashes}")
    raw_logit = sigmoid.input[0]
    nodes = [helper.make_node("Cast", [raw_logit], [_LOGIT_DOUBLE], to=TensorProto.DOUBLE, name=_CAST_NODE)]
    if isinstance(temperature, SignedPower):
        # sign(z) * max((|z| / T) ** p, |z| / FLOOR_TEMPERATURE): |z| / T >= 0, so Pow never sees a negative base;
        # z = 0 gives max(0 ** p, 0) = 0 (p > 0) times Sign(0) = 0, the logit of a score of exactly 0.5, as before
        nodes += [
            helper.make_node("Less", [_LOGIT_DOUBLE, _ZERO], [_IS_NEGATIVE], name="calibration/is_negative"),
            helper.make_node("Where", [_IS_NEGATIVE, TEMPERATURE_NEGATIVE, TEMPERATURE_POSITIVE], [_DIVISOR],
                             name="calibration/temperature_by_sign"),
            helper.make_node("Where", [_IS_NEGATIVE, POWER_NEGATIVE, POWER_POSITIVE], [_EXPONENT],
                             name="calibration/power_by_sign"),
            helper.make_node("Abs", [_LOGIT_DOUBLE], [_MAGNITUDE], name="calibration/magnitude"),
            helper.make_node("Div", [_MAGNITUDE, _DIVISOR], [_SCALED], name="calibration/divide_by_temperature"),
            helper.make_node("Pow", [_SCALED, _EXPONENT], [_POWERED], name="calibration/raise_to_power"),
            helper.make_node("Div", [_MAGNITUDE, _FLOOR_TEMPERATURE], [_FLOOR], name="calibration/floor"),
            helper.make_node("Max", [_POWERED, _FLOOR], [_KEPT], name="calibration/at_least_floor"),
            helper.make_node("Sign", [_LOGIT_DOUBLE], [_SIGN], name="calibration/sign"),
            helper.make_node("Mul", [_SIGN, _KEPT], [LOGIT_OUTPUT], name="calibration/restore_sign"),
        ]
        initializers = {_ZERO: 0.0, TEMPERATURE_POSITIVE: temperature.temperature_positive,
                        POWER_POSITIVE: temperature.power_positive,
                        TEMPERATURE_NEGATIVE: temperature.temperature_negative,
                        POWER_NEGATIVE: temperature.power_negative, _FLOOR_TEMPERATURE: FLOOR_TEMPERATURE}
    elif isinstance(temperature, SignedTemperature):
        nodes += [
            helper.make_node("Less", [_LOGIT_DOUBLE, _ZERO], [_IS_NEGATIVE], name="calibration/is_negative"),
            helper.make_node("Where", [_IS_NEGATIVE, TEMPERATURE_NEGATIVE, TEMPERATURE_POSITIVE], [_DIVISOR],
                             name="calibration/temperature_by_sign"),
            helper.make_node("Div", [_LOGIT_DOUBLE, _DIVISOR], [LOGIT_OUTPUT],
                             name="calibration/divide_by_signed_temperature"),
        ]
        initializers = {_ZERO: 0.0, TEMPERATURE_POSITIVE: temperature.positive,
                        TEMPERATURE_NEGATIVE: temperature.negative}
    else:
        nodes.append(helper.make_node("Div", [_LOGIT_DOUBLE, TEMPERATURE], [LOGIT_OUTPUT],
                                      name="calibration/divide_by_temperature"))
        initializers = {TEMPERATURE: temperature}
    nodes.append(helper.make_node("Clip", [LOGIT_OUTPUT, _LOWER, _UPPER], [_CLIPPED], name=_CLIP_NODE))
    initializers.update({_LOWER: -SCORE_LOGIT_BOUND, _UPPER: SCORE_LOGIT_BOUND})
    position = list(graph.node).index(sigmoid)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    sigmoid.input[0] = _CLIPPED
    for name, value in initializers.items():
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float64), name))
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


def uncalibrated(onnx_bytes: bytes) -> bytes:
    """The raw graph a calibrated one was made from (any method): the nodes and initializers ``calibrated``
    added are removed, the final Sigmoid reads the float32 logit again, the score is float32 again and the
    ``logit`` output is gone. A graph without a temperature is returned as it is."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    if temperature_of(model) is None:
        return onnx_bytes
    sigmoid = _final_sigmoid(graph)
    added = [node for node in graph.node if node.name.startswith(_PREFIX)]
    casts = [node for node in added if node.name == _CAST_NODE]
    score = graph.output[0]
    reads_the_calibration = sigmoid.input[0] in (LOGIT_OUTPUT, _CLIPPED)  # _CLIPPED: exports from 2026-11-30 on
    if (not reads_the_calibration or len(casts) != 1 or score.type.tensor_type.elem_type != TensorProto.DOUBLE
            or LOGIT_OUTPUT not in {node.output[0] for node in added}):
        raise CalibrationError("the graph has a temperature but not the ending calibrated() writes; re-export it "
                               "from the Keras weights instead")
    raw_logit = casts[0].input[0]
    for node in added:
        graph.node.remove(node)
    sigmoid.input[0] = raw_logit
    removed = {name for node in added for name in node.output} | set(_INITIALIZERS)
    for initializer in [init for init in graph.initializer if init.name in _INITIALIZERS]:
        graph.initializer.remove(initializer)
    still_read = sorted(removed & {name for node in graph.node for name in node.input})
    if still_read:
        raise CalibrationError(f"other nodes read what the calibration added: {still_read}")
    for output in [output for output in graph.output if output.name == LOGIT_OUTPUT]:
        graph.output.remove(output)
    score.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --- fitting and measuring ---------------------------------------------------------------------------------------



def graft_calibration(raw: bytes, calibrated: bytes) -> bytes:
    """``raw`` (an uncalibrated graph) with ``calibrated``'s calibration: the nodes and initializers
    ``calibrated``'s calibration step added to ``calibrated`` (those ``uncalibrated`` removes), reading ``raw``'s
    logit, and ``calibrated``'s outputs; ``raw`` itself when ``calibrated`` has no calibration."""
    stripped = onnx.load_from_string(uncalibrated(calibrated))
    if temperature_of(calibrated) is None:
        return raw
    target, source = onnx.load_from_string(raw), onnx.load_from_string(calibrated)
    kept = {node.name for node in stripped.graph.node}
    sigmoid_target, sigmoid_source = _final_sigmoid(target.graph), _final_sigmoid(source.graph)
    raw_logit_source, raw_logit_target = _final_sigmoid(stripped.graph).input[0], sigmoid_target.input[0]
    added = [node for node in source.graph.node if node.name not in kept]
    if sigmoid_source.name in {node.name for node in added}:
        raise ValueError("the calibrated graph's final Sigmoid is not the raw graph's")
    position = list(target.graph.node).index(sigmoid_target)
    for offset, node in enumerate(added):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        for index, name in enumerate(copy.input):
            if name == raw_logit_source:
                copy.input[index] = raw_logit_target
        target.graph.node.insert(position + offset, copy)
    sigmoid_target.input[0] = sigmoid_source.input[0]
    read = {name for node in added for name in node.input}
    have = {init.name for init in target.graph.initializer}
    target.graph.initializer.extend(init for init in source.graph.initializer if init.name in read - have)
    del target.graph.output[:]
    target.graph.output.extend(source.graph.output)
    if sigmoid_target.output[0] != source.graph.output[0].name:
        raise ValueError("the raw and calibrated graphs name their score differently")
    onnx.checker.check_model(target)
    return target.SerializeToString()

def _mean_log_loss(logits_: np.ndarray, labels: np.ndarray, temperature: Temperature) -> float:
    """Mean binary cross-entropy of sigmoid(map(logit)), computed from the mapped logit (no clipping, no
    overflow)."""
    scaled = scaled_logits(logits_, temperature)
    return float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled))


def _as_pairs(logits_: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits_ = np.asarray(logits_, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if len(logits_) != len(labels) or len(labels) == 0:
        raise CalibrationError(f"{len(logits_)} logits for {len(labels)} labels")
    return logits_, labels


def fit_temperature(logits_: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the log loss of sigmoid(logit / T) on (logits, labels): a bounded search over
    log T (the loss is convex in 1/T, so unimodal in log T)."""
    logits_, labels = _as_pairs(logits_, labels)
    result = minimize_scalar(lambda log_t: _mean_log_loss(logits_, labels, math.exp(log_t)),
                             bounds=LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-9})
    return float(math.exp(result.x))


def fit_signed_temperature(logits_: np.ndarray, labels: np.ndarray) -> SignedTemperature:
    """The T+, T- > 0 that minimise the log loss of sigmoid(logit / T(sign of logit)). A review's loss depends on
    T+ alone when its logit is >= 0 and on T- alone when it is < 0, so each is ``fit_temperature`` on its side;
    a side without any review (nothing to fit) takes the one temperature of all the reviews."""
    logits_, labels = _as_pairs(logits_, labels)
    negative = logits_ < 0
    sides = []
    for side in (~negative, negative):
        sides.append(fit_temperature(logits_[side], labels[side]) if side.any() else None)
    if None in sides:
        single = fit_temperature(logits_, labels)
        sides = [single if value is None else value for value in sides]
    return SignedTemperature(*sides)


def _fit_power_side(logits_: np.ndarray, labels: np.ndarray, temperature: float) -> tuple[float, float]:
    """The T, p > 0 that minimise the log loss of the signed power's map (``scaled_logits``) over logits of one
    sign (none of them 0), from T = ``temperature`` (that side's signed temperature) and p = 1: L-BFGS-B over
    (log T, log p), with the gradient. The loss is not convex in (T, p), so the search starts from the signed
    temperature's optimum and never ends worse than it."""
    sign = np.sign(logits_)
    log_magnitude = np.log(np.abs(logits_))
    floor = np.abs(logits_) / FLOOR_TEMPERATURE

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        log_t, log_p = theta
        power = math.exp(log_p)
        powered_ = np.exp(power * (log_magnitude - log_t))
        mapped = sign * np.maximum(powered_, floor)
        # d loss / d mapped, per review; where the floor binds, the map does not depend on (T, p)
        residual = np.where(powered_ >= floor, expit(mapped) - labels, 0.0)
        loss = float(np.mean(np.logaddexp(0.0, mapped) - labels * mapped))
        gradient = np.array([np.mean(residual * mapped * -power),
                             np.mean(residual * mapped * power * (log_magnitude - log_t))])
        return loss, gradient

    start = np.array([min(max(math.log(temperature), LOG_TEMPERATURE_BOUNDS[0]), LOG_TEMPERATURE_BOUNDS[1]), 0.0])
    result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B",
                      bounds=[LOG_TEMPERATURE_BOUNDS, LOG_POWER_BOUNDS],
                      options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 1_000})
    best = result.x if loss_and_gradient(result.x)[0] <= loss_and_gradient(start)[0] else start
    return float(math.exp(best[0])), float(math.exp(best[1]))


def fit_signed_power(logits_: np.ndarray, labels: np.ndarray) -> SignedPower:
    """The T+, p+, T-, p- > 0 that minimise the log loss of sigmoid(sign(z) * (|z| / T) ** p), T and p those of
    the logit's side. As for the signed temperature, a review's loss depends on its side's pair alone, so each
    side is fitted on its own, from its signed temperature and p = 1 (``_fit_power_side``); a logit of exactly 0
    maps to 0 whatever the pair, and a side without any other logit keeps its signed temperature and p = 1."""
    logits_, labels = _as_pairs(logits_, labels)
    start = fit_signed_temperature(logits_, labels)
    pairs = []
    for side, temperature in ((logits_ > 0, start.positive), (logits_ < 0, start.negative)):
        pairs.append(_fit_power_side(logits_[side], labels[side], temperature) if side.any() else (temperature, 1.0))
    (positive, power_positive), (negative, power_negative) = pairs
    return SignedPower(positive, power_positive, negative, power_negative)


def signed_allowed(config: dict) -> bool:
    """Whether a model with this training config may get a non-linear map of its logit (a signed temperature or
    a signed power): every model but a mean-pooled ``bag``, whose exact explanation (``service/explaining.py:
    BagShares``) needs the logit linear in its terms, so it keeps one temperature."""
    return not logit_is_linear_in_terms(config)


def select_method(logits_: np.ndarray, labels: np.ndarray, allow_signed: bool, folds: int = SELECTION_FOLDS,
                  seed: int = SELECTION_SEED) -> CalibrationSelection | None:
    """Cross-validation on the held-out reviews: the reviews are dealt into ``folds`` folds by a seeded
    permutation; each fold is scored with one temperature, with a signed temperature and with a signed power,
    each fitted on the other folds. Returns the three out-of-fold figures (log loss from the logit, ECE of the
    scores), whether the non-linear methods are allowed (``allow_signed``) or not; None when there are fewer
    reviews than folds. ``chosen_method`` reads the choice off it."""
    logits_, labels = _as_pairs(logits_, labels)
    if len(labels) < folds:
        return None
    fold_of = np.empty(len(labels), dtype=np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(labels))] = np.arange(len(labels)) % folds
    out_of_fold = {method: np.empty(len(labels)) for method in METHODS}
    for fold in range(folds):
        held, rest = fold_of == fold, fold_of != fold
        for method, scaled in out_of_fold.items():
            scaled[held] = scaled_logits(logits_[held], fit(logits_[rest], labels[rest], method))

    def figures(scaled: np.ndarray) -> HeldOutFigures:
        return HeldOutFigures(log_loss=float(np.mean(np.logaddexp(0.0, scaled) - labels * scaled)),
                              ece=expected_calibration_error(labels, expit(scaled)))

    return CalibrationSelection(folds=folds, seed=seed, signed_allowed=allow_signed,
                                single=figures(out_of_fold["temperature"]),
                                signed=figures(out_of_fold["signed_temperature"]),
                                signed_power=figures(out_of_fold["signed_power"]))


def chosen_method(selection: CalibrationSelection | None) -> str:
    """The allowed method with the lowest out-of-fold log loss: ``temperature`` alone when the non-linear ones
    are not allowed (or there was no selection); a tie goes to the simpler method (``METHODS``' order). A record
    made before the signed power has no figures for it, and its choice was between the other two."""
    if selection is None or not selection.signed_allowed:
        return "temperature"
    figures = {"temperature": selection.single, "signed_temperature": selection.signed,
               "signed_power": selection.signed_power}
    candidates = [method for method in METHODS if figures[method] is not None]
    return min(candidates, key=lambda method: (figures[method].log_loss, METHODS.index(method)))


def fit(logits_: np.ndarray, labels: np.ndarray, method: str) -> Temperature:
    """The map of ``method``, fitted on all the reviews."""
    if method == "signed_power":
        return fit_signed_power(logits_, labels)
    if method == "signed_temperature":
        return fit_signed_temperature(logits_, labels)
    if method == "temperature":
        return fit_temperature(logits_, labels)
    raise CalibrationError(f"unknown calibration method {method!r}")


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
    correct = ((scores >= THRESHOLD) == (labels == 1)).astype(np.float64)
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
                     bins: int = ECE_BINS, after_label: str = "after (temperature)") -> None:
    """The reliability diagram: positive fraction against mean score per bin, before and after, with the
    diagonal of perfect calibration; below, how many reviews fall in each bin."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, (curve_axis, count_axis) = plt.subplots(2, 1, figsize=(6, 7), sharex=True,
                                                    gridspec_kw={"height_ratios": [3, 1]})
    curve_axis.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for scores, style, label in ((before, "o-", "before"), (after, "s-", after_label)):
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
    temperature: Temperature
    test_scores: np.ndarray  # float64, of the calibrated graph
    before_scores: np.ndarray  # of the uncalibrated graph
    calibration: Calibration


def temperature_fields(temperature: Temperature) -> dict:
    """The metadata's ``calibration`` fields that say how the logit is mapped."""
    if isinstance(temperature, SignedPower):
        return {"method": "signed_power", "temperature_positive": temperature.temperature_positive,
                "power_positive": temperature.power_positive,
                "temperature_negative": temperature.temperature_negative,
                "power_negative": temperature.power_negative}
    if isinstance(temperature, SignedTemperature):
        return {"method": "signed_temperature", "temperature_positive": temperature.positive,
                "temperature_negative": temperature.negative}
    return {"method": "temperature", "temperature": temperature}


def recorded_temperature(calibration: Calibration) -> Temperature:
    """The temperature a metadata's ``calibration`` block records, as ``temperature_of`` reads it off the graph."""
    if calibration.method == "signed_power":
        return SignedPower(calibration.temperature_positive, calibration.power_positive,
                           calibration.temperature_negative, calibration.power_negative)
    if calibration.method == "signed_temperature":
        return SignedTemperature(calibration.temperature_positive, calibration.temperature_negative)
    return calibration.temperature


def calibrate_export(name: str, onnx_bytes: bytes, fit_tokens: np.ndarray, fit_labels: np.ndarray, fitted_on: str,
                     test_tokens: np.ndarray, test_labels: np.ndarray, out: Path | None = None, *,
                     allow_signed: bool = False, folds: int = SELECTION_FOLDS) -> Calibrated:
    """Choose the method on the held-out reviews (``select_method``: a signed temperature or a signed power
    only when ``allow_signed`` allows a non-linear map and its out-of-fold log loss is the lowest), fit it on all
    of them, rewrite the graph, and check the rewrite on the test reviews: every label unchanged, scores =
    sigmoid(map(old logit)) within PARITY_TOLERANCE, no score exactly 0 or 1 (CalibrationError otherwise).
    ``onnx_bytes`` is the raw export (``uncalibrated`` gives it back from a calibrated one). Writes
    ``<name>_reliability.png`` into ``out`` when it is given. The test reviews only measure: nothing is chosen or
    fitted on them."""
    fit_labels = np.asarray(fit_labels).reshape(-1)
    test_labels = np.asarray(test_labels).reshape(-1)
    _, fit_logits = scores_and_logits(onnx_bytes, fit_tokens)
    selection = select_method(fit_logits, fit_labels, allow_signed, folds)
    method = chosen_method(selection)
    if selection is not None:
        log.info("%s: %d-fold out-of-fold log loss on %s: one temperature %.5f (ECE %.4f), signed temperature "
                 "%.5f (ECE %.4f), signed power %.5f (ECE %.4f)%s; method %s", name, selection.folds, fitted_on,
                 selection.single.log_loss, selection.single.ece, selection.signed.log_loss, selection.signed.ece,
                 selection.signed_power.log_loss, selection.signed_power.ece,
                 "" if allow_signed else " (non-linear maps not allowed)", method)
    temperature = fit(fit_logits, fit_labels, method)
    log.info("%s: %s fitted on %s; their log loss %.4f -> %.4f", name, describe(temperature), fitted_on,
             _mean_log_loss(fit_logits, fit_labels, 1.0), _mean_log_loss(fit_logits, fit_labels, temperature))
    new_bytes = calibrated(onnx_bytes, temperature)
    before, raw_logits = scores_and_logits(onnx_bytes, test_tokens)
    after, new_logits = scores_and_logits(new_bytes, test_tokens)
    check_rewrite(before, raw_logits, after, new_logits, temperature)
    diagram = None
    if out is not None:
        diagram = f"{name}_reliability.png"
        plot_reliability(test_labels, before, after, f"{name}: reliability on {len(test_labels):,} test reviews\n"
                         f"({describe(temperature)})", out / diagram,
                         after_label=f"after ({method.replace('_', ' ')})")
    calibration = Calibration(
        **temperature_fields(temperature), selection=selection, fitted_on=fitted_on, reviews=len(fit_labels),
        bins=ECE_BINS, test_reviews=len(test_labels),
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
                  temperature: Temperature) -> None:
    """The calibrated graph changes the scores by the temperature's map only (CalibrationError otherwise)."""
    if after.dtype != np.float64:
        raise CalibrationError(f"the calibrated scores are {after.dtype}, not float64")
    changed = int(np.sum((before >= THRESHOLD) != (after >= THRESHOLD)))
    if changed:
        raise CalibrationError(f"calibration would change {changed} labels")
    expected = scaled_logits(raw_logits, temperature)
    difference = float(np.max(np.abs(after - expit(np.clip(expected, -SCORE_LOGIT_BOUND, SCORE_LOGIT_BOUND)))))
    if not difference <= PARITY_TOLERANCE:
        raise CalibrationError(f"calibrated scores differ from sigmoid(logit / T) ({describe(temperature)}) by "
                               f"{difference:.3g} (tolerance {PARITY_TOLERANCE})")
    if not np.allclose(new_logits, expected, rtol=1e-12, atol=0):
        raise CalibrationError(f"the graph's logit output is not the raw logit mapped by {describe(temperature)}")
    saturated = int(np.sum((after == 0.0) | (after == 1.0)))
    if saturated:
        raise CalibrationError(f"{saturated} calibrated scores are exactly 0 or 1 (a calibrated logit beyond about "
                               "+-36.7)")


# --- the command -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="models to calibrate (default: every model in --out that has no temperature yet; "
                             "with --recalibrate, every model in --out)")
    parser.add_argument("--out", type=Path, default=Path("models"),
                        help="folder of the models; rewritten in place (default: %(default)s)")
    parser.add_argument("--data", type=Path,
                        help="aclImdb_v1 .tar.gz or extracted aclImdb/ folder (default: the dataset archive the "
                             "data setting finds: $IMDB_DATA_DIR, else data/ or ../shared/data)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="calibrate models that are calibrated already: restore each one's raw graph (the "
                             "temperature removed), check it against the recorded 'before' figures, and fit again")
    return parser.parse_args(argv)


def uncalibrated_models(out: Path) -> list[str]:
    names = []
    for path in sorted(out.glob("*.onnx")):
        metadata = path.with_suffix(".json")
        if metadata.exists() and read_metadata(metadata).calibration is None:
            names.append(path.stem)
    return names


def all_models(out: Path) -> list[str]:
    return [path.stem for path in sorted(out.glob("*.onnx")) if path.with_suffix(".json").exists()]


# A restored raw graph must reproduce the recorded figures of the raw export (same graph, same onnxruntime)
BEFORE_TOLERANCE = 1e-9


def calibrate_model(name: str, out: Path, dataset: dict, cache: dict, recalibrate: bool = False) -> ModelMetadata:
    """Calibrate ``out/<name>.onnx`` in place, with its metadata, from the dataset it was trained on. With
    ``recalibrate``, a calibrated model is first restored to its raw graph (``uncalibrated``); the restored graph
    must reproduce the ``before`` figures the metadata records. A signed temperature or a signed power is
    allowed unless the model is a mean-pooled bag (``signed_allowed``)."""
    from artifacts.loading import load_tokenizer
    from artifacts.vocabulary import file_sha256
    from training import evaluate
    from training.pipeline import sample_reviews

    metadata = read_metadata(out / f"{name}.json")
    onnx_path = out / f"{name}.onnx"
    onnx_bytes = onnx_path.read_bytes()
    already = temperature_of(onnx_bytes)
    if (metadata.calibration is not None or already is not None) and not recalibrate:
        raise CalibrationError(f"{name} is already calibrated ({describe(already) if already else 'per metadata'}); "
                               "pass --recalibrate to restore its raw graph and fit again rather than dividing twice")
    if file_sha256(onnx_path) != metadata.onnx_sha256:
        raise CalibrationError(f"{onnx_path}: sha256 does not match the checksum in {name}.json")
    if (metadata.calibration is None) != (already is None) or (
            already is not None and recorded_temperature(metadata.calibration) != already):
        raise CalibrationError(f"{name}: the graph's temperature ({describe(already) if already else 'none'}) is "
                               "not the one its metadata records")
    if metadata.training is None or metadata.test_metrics is None:
        raise CalibrationError(f"{name}: the metadata has no training record or test metrics to rebuild the "
                               "held-out reviews from and check against")
    training = metadata.training
    if training.counterfactual is not None:  # its training reviews are not the dataset's: the pipeline's own set
        raise CalibrationError(f"{name} was trained with counterfactual pairs, and this command rebuilds held-out "
                               f"reviews from the IMDB training reviews alone; retrain it (python -m training "
                               f"--models {name}), which calibrates on its own held-out reviews")
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

    result = calibrate_export(name, uncalibrated(onnx_bytes), x_fit, y_fit, held_out.description, x_test,
                              reviews.test_labels, out, allow_signed=signed_allowed(metadata.config))
    if metadata.calibration is not None:  # the restored graph is the raw export the figures were measured on
        recorded, measured = metadata.calibration.before.model_dump(), result.calibration.before.model_dump()
        off = {key: (recorded[key], measured[key]) for key in recorded if recorded[key] is not None
               and not abs(recorded[key] - measured[key]) <= BEFORE_TOLERANCE}
        if off:
            raise CalibrationError(f"{name}: the restored raw graph does not reproduce the recorded 'before' "
                                   f"figures (recorded, measured): {off}")
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
    log.info("%s: calibrated export (%s) written to %s (version %s -> %s)", name, describe(result.temperature),
             onnx_path, metadata.version, updated.version)
    return updated


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    from training.data import DataError, dataset_path, load_imdb, require_data_file
    from training.pipeline import write_report

    try:
        names = args.models or (all_models(args.out) if args.recalibrate else uncalibrated_models(args.out))
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
            calibrate_model(name, args.out, dataset, cache, recalibrate=args.recalibrate)
        write_report(args.out)
    except (CalibrationError, MetadataError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
