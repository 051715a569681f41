"""Calibration inside the graph (training/calibrate.py): one temperature, a signed temperature or a signed power.
The fit, the choice of method, the metrics, the graph rewrite and its undoing, the held-out reviews, the metadata,
the command on a pipeline export, and the committed models."""

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError
from scipy.special import expit, logit

from artifacts.loading import load_tokenizer
from artifacts.metadata import (
    Calibration,
    CalibrationMetrics,
    CalibrationSelection,
    Refit,
    TrainingRecord,
    logit_is_linear_in_terms,
    read_metadata,
)
from artifacts.vocabulary import file_sha256
from service.explaining import BagShares, ExplainError
from tests import fakes
from tests.conftest import KERAS_WORD_INDEX, MODEL_NAMES, MODELS_DIR
from training import calibrate
from training.calibrate import (
    LOGIT_OUTPUT,
    TEMPERATURE,
    CalibrationError,
    SignedPower,
    SignedTemperature,
    calibrated,
    calibration_metrics,
    chosen_method,
    expected_calibration_error,
    fit_signed_power,
    fit_signed_temperature,
    fit_temperature,
    held_out_indices,
    recorded_temperature,
    scaled_logits,
    select_method,
    temperature_of,
    uncalibrated,
)

WIDTH = 4  # tokens per review of the tiny model

ONE_ULP = float(np.spacing(1.0))  # 2.2e-16


# --- fitting and measuring -------------------------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_fit_temperature_recovers_the_temperature_that_made_the_logits_over_or_underconfident(true_temperature):
    rng = np.random.default_rng(0)
    calibrated_logits = rng.normal(0, 3, 200_000)
    labels = (rng.random(200_000) < expit(calibrated_logits)).astype(int)
    assert fit_temperature(calibrated_logits * true_temperature, labels) == pytest.approx(true_temperature, rel=0.02)


def test_fit_temperature_minimises_the_log_loss():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, 5_000)
    labels = (rng.random(5_000) < expit(logits / 1.7)).astype(int)
    best = fit_temperature(logits, labels)

    def loss(temperature):
        return calibration_metrics(labels, expit(logits / temperature))["log_loss"]

    assert loss(best) < min(loss(best * 0.97), loss(best * 1.03), loss(1.0))


def test_fit_temperature_refuses_logits_without_labels():
    with pytest.raises(CalibrationError, match="3 logits for 2 labels"):
        fit_temperature(np.zeros(3), np.zeros(2))


def lopsided(positive: float, negative: float, reviews: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels were drawn from sigmoid(logit / T+) where the logit is >= 0 and sigmoid(logit / T-)
    where it is < 0: a model too sure of its positive (or negative) calls."""
    rng = np.random.default_rng(seed)
    calibrated_logits = rng.normal(0, 3, reviews)
    labels = (rng.random(reviews) < expit(calibrated_logits)).astype(int)
    raw = np.where(calibrated_logits >= 0, calibrated_logits * positive, calibrated_logits * negative)
    return raw, labels


def test_fit_signed_temperature_recovers_a_different_temperature_on_each_side_of_zero():
    logits, labels = lopsided(2.5, 0.6, 200_000, 5)
    fitted = fit_signed_temperature(logits, labels)
    assert fitted.positive == pytest.approx(2.5, rel=0.03) and fitted.negative == pytest.approx(0.6, rel=0.03)


def test_fit_signed_temperature_minimises_the_log_loss_over_both_temperatures():
    logits, labels = lopsided(1.8, 0.9, 5_000, 6)
    best = fit_signed_temperature(logits, labels)

    def loss(temperature):
        scaled = scaled_logits(logits, temperature)
        return float(np.mean(np.logaddexp(0, scaled) - labels * scaled))

    nudged = [SignedTemperature(best.positive * a, best.negative * b) for a in (0.97, 1, 1.03) for b in (0.97, 1, 1.03)
              if (a, b) != (1, 1)]
    assert all(loss(best) < loss(other) for other in nudged)
    assert loss(best) < loss(fit_temperature(logits, labels))  # two parameters fit at least as well as one


def test_a_side_without_logits_takes_the_single_temperature():
    logits = np.array([0.5, 1.0, 2.0, 3.0])
    labels = np.array([0, 1, 1, 1])
    single = fit_temperature(logits, labels)
    assert fit_signed_temperature(logits, labels) == SignedTemperature(single, single)


def powered(power: SignedPower, reviews: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits that ``power`` maps onto calibrated ones, with labels drawn from sigmoid(calibrated logit): the
    raw logit is sign(c) * T * |c| ** (1 / p) for the calibrated logit c, T and p those of its side."""
    rng = np.random.default_rng(seed)
    calibrated_logits = rng.normal(0, 2.5, reviews)
    labels = (rng.random(reviews) < expit(calibrated_logits)).astype(int)
    negative = calibrated_logits < 0
    temperature = np.where(negative, power.temperature_negative, power.temperature_positive)
    exponent = np.where(negative, power.power_negative, power.power_positive)
    return np.sign(calibrated_logits) * temperature * np.abs(calibrated_logits) ** (1 / exponent), labels


def test_fit_signed_power_recovers_a_temperature_and_a_power_on_each_side_of_zero():
    truth = SignedPower(1.8, 2.2, 0.6, 0.7)  # like conv_lstm: unsure near 0.5 and too sure far from it, or not
    logits, labels = powered(truth, 200_000, 11)
    fitted = fit_signed_power(logits, labels)
    for field in dataclasses.fields(SignedPower):
        assert getattr(fitted, field.name) == pytest.approx(getattr(truth, field.name), rel=0.05), field.name
    np.testing.assert_allclose(scaled_logits(logits, truth), scaled_logits(logits, fitted), rtol=0.1, atol=0.05)


def test_fit_signed_power_minimises_the_log_loss_and_is_never_worse_than_the_signed_temperature():
    logits, labels = powered(SignedPower(1.3, 1.6, 0.9, 0.8), 5_000, 12)
    best = fit_signed_power(logits, labels)

    def loss(mapping):
        return calibrate._mean_log_loss(logits, labels, mapping)

    for field in dataclasses.fields(SignedPower):
        for factor in (0.97, 1.03):
            nudged = dataclasses.replace(best, **{field.name: getattr(best, field.name) * factor})
            assert loss(best) < loss(nudged), (field.name, factor)
    signed = fit_signed_temperature(logits, labels)
    assert loss(best) < loss(signed) <= loss(SignedPower(signed.positive, 1.0, signed.negative, 1.0)) + 1e-15
    # and the same when a signed temperature is the truth: the powers stay near 1 and the loss no higher
    logits, labels = lopsided(2.0, 0.7, 20_000, 13)
    best, signed = fit_signed_power(logits, labels), fit_signed_temperature(logits, labels)
    assert loss(best) <= loss(signed) and best.power_positive == pytest.approx(1, abs=0.1)
    assert best.power_negative == pytest.approx(1, abs=0.1)


def test_a_side_without_logits_keeps_its_signed_temperature_and_a_power_of_1():
    logits = np.array([0.0, 0.5, 1.0, 2.0, 3.0])  # 0 maps to 0 whatever the pair: nothing to fit below 0
    labels = np.array([1, 0, 1, 1, 1])
    fitted = fit_signed_power(logits, labels)
    signed = fit_signed_temperature(logits, labels)
    assert (fitted.temperature_negative, fitted.power_negative) == (signed.negative, 1.0)


def test_the_power_stays_within_its_bounds_on_separable_logits():
    logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    fitted = fit_signed_power(logits, np.array([0, 0, 0, 1, 1, 1]))  # no finite optimum: the bounds hold it
    low, high = np.exp(calibrate.LOG_POWER_BOUNDS)
    assert low - 1e-12 <= fitted.power_positive <= high + 1e-12 and low - 1e-12 <= fitted.power_negative <= high + 1e-12


@settings(max_examples=300, deadline=None)
@given(raw=arrays(np.float32, st.integers(1, 60), elements=st.floats(-100, 100, width=32)),
       positive=st.floats(1e-3, 1e3), negative=st.floats(1e-3, 1e3))
def test_a_signed_temperature_keeps_every_label_and_the_order_of_the_scores(raw, positive, negative):
    # the graph's raw logit is float32 (tiny ones included), cast to float64 and divided there; temperatures span
    # the fit's bounds
    temperature = SignedTemperature(positive, negative)
    logits = raw.astype(np.float64)
    scaled = scaled_logits(logits, temperature)
    assert np.array_equal(scaled >= 0, logits >= 0) and np.array_equal(scaled < 0, logits < 0)
    # the label is the score's side of 0.5; a logit within about 2e-16 of 0 (hypothesis finds them) scores 0.5
    # exactly in float64 whatever its sign, and dividing it can move it across that band: its label follows its
    # sign only outside it
    clear = np.abs(logits) > 1e-12
    assert np.array_equal((expit(scaled) >= 0.5)[clear], (expit(logits) >= 0.5)[clear])
    assert np.array_equal((expit(scaled) >= 0.5)[clear], (logits >= 0)[clear])
    order = np.argsort(logits, kind="stable")
    assert (np.diff(scaled[order]) >= 0).all()  # non-decreasing where the logits are
    strictly = np.diff(logits[order]) > 0
    assert (np.diff(scaled[order])[strictly] > 0).all()  # strictly increasing: no two logits merge


def logit_passthrough() -> bytes:
    """A graph whose raw logit is its input: float32 logits [n, 1] -> Identity -> Sigmoid -> score."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["z"], ["raw_logit"]), helper.make_node("Sigmoid", ["raw_logit"], ["score"])],
        "passthrough", [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def run_on_logits(onnx_bytes: bytes, raw: np.ndarray) -> dict[str, np.ndarray]:
    """A ``logit_passthrough`` graph's outputs (flattened) for the float32 logits ``raw``."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(None, {"z": np.asarray(raw, dtype=np.float32).reshape(-1, 1)})
    return {name: output.reshape(-1) for name, output in zip(names, outputs, strict=True)}


POWER_LIMITS = tuple(float(x) for x in np.exp(calibrate.LOG_POWER_BOUNDS))


@settings(max_examples=200, deadline=None)
@given(raw=arrays(np.float32, st.integers(1, 60), elements=st.floats(-100, 100, width=32)),
       temperature_positive=st.floats(1e-3, 1e3), power_positive=st.floats(*POWER_LIMITS),
       temperature_negative=st.floats(1e-3, 1e3), power_negative=st.floats(*POWER_LIMITS))
def test_a_signed_power_keeps_every_label_and_the_order_of_the_scores_in_numpy_and_in_the_graph(
        raw, temperature_positive, power_positive, temperature_negative, power_negative):
    power = SignedPower(temperature_positive, power_positive, temperature_negative, power_negative)
    logits = raw.astype(np.float64)
    mapped = scaled_logits(logits, power)
    assert np.isfinite(mapped).all()
    assert np.array_equal(mapped > 0, logits > 0) and np.array_equal(mapped < 0, logits < 0)
    assert (mapped[logits == 0] == 0).all()  # continuous at 0: a score of 0.5 stays 0.5, from either side
    # the graph computes the same map, in float64 (the raw logit is the float32 input)
    outputs = run_on_logits(calibrated(logit_passthrough(), power), raw)
    graph_logits, scores = outputs[LOGIT_OUTPUT], outputs["score"]
    np.testing.assert_allclose(graph_logits, mapped, rtol=1e-12, atol=0)
    np.testing.assert_allclose(scores, expit(mapped), rtol=0, atol=1e-6)
    # labels: as for the signed temperature, a logit within float rounding of 0 scores 0.5 from either side
    clear = np.abs(logits) > 1e-12
    assert np.array_equal((scores >= 0.5)[clear], (logits >= 0)[clear])
    assert np.array_equal((scores >= 0.5)[clear], (expit(logits) >= 0.5)[clear])
    # order: the mapped logits strictly increasing between distinct logits, subnormal ones included (the floor
    # |z| / e^7 keeps a power from sending them to 0); the scores may merge only where the float64 sigmoid itself
    # runs out of digits
    order = np.argsort(logits, kind="stable")
    # onnxruntime's float64 sigmoid can differ by one unit in the last place between equal inputs (its vectorised
    # and scalar paths), so equal logits may score 1e-16 apart in either order
    assert (np.diff(graph_logits[order]) >= 0).all() and (np.diff(scores[order]) >= -ONE_ULP).all()
    assert (np.diff(graph_logits[order])[np.diff(logits[order]) > 0] > 0).all()


def test_a_steep_power_does_not_round_a_small_negative_logit_to_a_score_of_one_half():
    # without the floor, (1e-7 / 1) ** 2.5 = 3e-18 would score exactly 0.5 in float64: labelled positive
    power = SignedPower(1.0, 2.5, 1.0, 2.5)
    logits = np.array([-1e-7, -1e-9, 1e-9, 1e-7])
    assert expit(-((1e-7 / 1.0) ** 2.5)) == 0.5  # what the power alone would do
    mapped = scaled_logits(logits, power)
    np.testing.assert_allclose(mapped, logits / calibrate.FLOOR_TEMPERATURE, rtol=1e-15)
    assert np.array_equal(expit(mapped) >= 0.5, logits >= 0)
    assert np.array_equal(run_on_logits(calibrated(logit_passthrough(), power), logits)["score"] >= 0.5, logits >= 0)


def test_the_method_is_signed_only_when_it_is_better_out_of_fold_and_allowed():
    logits, labels = lopsided(2.0, 0.7, 5_000, 7)
    selection = select_method(logits, labels, allow_signed=True)
    assert selection.folds == 5 and selection.signed.log_loss < selection.single.log_loss
    assert chosen_method(selection) == "signed_temperature"
    not_allowed = select_method(logits, labels, allow_signed=False)
    assert not not_allowed.signed_allowed and chosen_method(not_allowed) == "temperature"
    # symmetric logits: the extra parameter only fits noise, and one temperature is kept
    logits, labels = lopsided(1.5, 1.5, 5_000, 8)
    symmetric = select_method(logits, labels, allow_signed=True)
    assert symmetric.single.log_loss <= symmetric.signed.log_loss and chosen_method(symmetric) == "temperature"


def test_the_method_is_a_signed_power_when_it_is_best_out_of_fold_and_allowed():
    logits, labels = powered(SignedPower(1.8, 2.2, 0.6, 0.7), 5_000, 14)
    selection = select_method(logits, labels, allow_signed=True)
    assert selection.signed_power.log_loss < min(selection.single.log_loss, selection.signed.log_loss)
    assert chosen_method(selection) == "signed_power"
    assert chosen_method(select_method(logits, labels, allow_signed=False)) == "temperature"


@pytest.mark.parametrize("figures, method", [
    ((0.30, 0.29, 0.28), "signed_power"), ((0.30, 0.28, 0.29), "signed_temperature"),
    ((0.28, 0.29, 0.30), "temperature"), ((0.28, 0.28, 0.28), "temperature"),
    ((0.30, 0.28, 0.28), "signed_temperature"),
    ((0.30, 0.29, None), "signed_temperature"),  # a selection recorded before the signed power was a candidate
])
def test_the_lowest_out_of_fold_log_loss_wins_and_a_tie_goes_to_the_simpler_method(figures, method):
    single, signed, power = ({"log_loss": value, "ece": 0.01} if value is not None else None for value in figures)
    selection = {"folds": 5, "seed": 0, "signed_allowed": True, "single": single, "signed": signed,
                 "signed_power": power}
    assert chosen_method(CalibrationSelection.model_validate(selection)) == method
    assert chosen_method(CalibrationSelection.model_validate({**selection, "signed_allowed": False})) == "temperature"


def test_the_method_is_chosen_out_of_fold_not_on_the_reviews_it_was_fitted_on():
    logits, labels = lopsided(1.5, 1.5, 400, 9)
    selection = select_method(logits, labels, allow_signed=True)
    in_sample_single = calibrate._mean_log_loss(logits, labels, fit_temperature(logits, labels))
    in_sample_signed = calibrate._mean_log_loss(logits, labels, fit_signed_temperature(logits, labels))
    in_sample_power = calibrate._mean_log_loss(logits, labels, fit_signed_power(logits, labels))
    # in sample, more parameters always look at least as good
    assert in_sample_power <= in_sample_signed <= in_sample_single
    assert selection.single.log_loss > in_sample_single and selection.signed.log_loss > in_sample_signed
    assert selection.signed_power.log_loss > in_sample_power
    assert chosen_method(selection) == "temperature"  # out of fold, the extra parameters only fitted noise
    assert select_method(logits[:4], labels[:4], allow_signed=True) is None  # fewer reviews than folds: no choice


def test_ece_of_calibrated_scores_is_small_and_of_overconfident_scores_large():
    rng = np.random.default_rng(2)
    scores = rng.random(100_000)
    labels = (rng.random(100_000) < scores).astype(int)
    assert expected_calibration_error(labels, scores) < 0.01
    overconfident = expit(3 * logit(scores))
    assert expected_calibration_error(labels, overconfident) > 0.08


def test_ece_weighs_each_bin_by_its_reviews():
    # bin [0, 1/15): 3 reviews, mean score 0.04, one positive: gap 0.293; bin [14/15, 1]: 1 review, positive,
    # score 1.0: gap 0
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.0, 0.06, 0.06, 1.0])
    assert expected_calibration_error(labels, scores) == pytest.approx(abs(1 / 3 - 0.04) * 3 / 4)


def test_brier_and_log_loss_are_the_textbook_ones():
    labels, scores = np.array([1, 0, 1]), np.array([0.8, 0.3, 0.5])
    metrics = calibration_metrics(labels, scores)
    assert metrics["brier"] == pytest.approx((0.2 ** 2 + 0.3 ** 2 + 0.5 ** 2) / 3)
    assert metrics["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.7) + np.log(0.5)) / 3)
    assert (metrics["min_score"], metrics["max_score"]) == (0.3, 0.8)
    # a score of exactly 0 or 1 costs what Keras's clipped cross-entropy charges, not infinity
    assert calibration_metrics(np.array([1]), np.array([0.0]))["log_loss"] == pytest.approx(-np.log(1e-7))


def test_top_label_ece_cancels_opposite_errors_the_score_ece_counts():
    # too many positives at 0.7 and too many at 0.3: miscalibrated either side, one confidence bin after folding
    labels = np.array([1] * 80 + [0] * 20 + [1] * 40 + [0] * 60)
    scores = np.array([0.7] * 100 + [0.3] * 100)
    metrics = calibration_metrics(labels, scores)
    assert metrics["ece"] == pytest.approx(0.1) and metrics["ece_top_label"] == pytest.approx(0.0, abs=1e-12)


# --- the graph -------------------------------------------------------------------------------------------------


def tiny_model(weights=(1.0, -2.0, 0.5, 3.0), bias=0.25) -> bytes:
    """The exported graphs' ending on a tiny scale: int32 tokens [n, 4] -> Cast -> MatMul -> Add -> Sigmoid."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["tokens"], ["features"], to=TensorProto.FLOAT),
         helper.make_node("MatMul", ["features", "W"], ["product"]),
         helper.make_node("Add", ["product", "b"], ["raw_logit"]),
         helper.make_node("Sigmoid", ["raw_logit"], ["Identity:0"])],
        "tiny",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, [None, WIDTH])],
        [helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, [None, 1])],
        initializer=[numpy_helper.from_array(np.array(weights, dtype=np.float32).reshape(WIDTH, 1), "W"),
                     numpy_helper.from_array(np.array([bias], dtype=np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def raw_logits(tokens: np.ndarray, weights=(1.0, -2.0, 0.5, 3.0), bias=0.25) -> np.ndarray:
    return tokens.astype(np.float64) @ np.array(weights) + bias


def run(onnx_bytes: bytes, tokens: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"tokens": tokens}), strict=True))


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    # logits from about -40 to 40: beyond float32's sigmoid range (exactly 1.0 above ~16.6)
    return np.random.default_rng(3).integers(-8, 9, (300, WIDTH)).astype(np.int32)


def test_the_calibrated_graph_scores_sigmoid_of_the_logit_over_the_temperature_in_float64(tokens):
    outputs = run(calibrated(tiny_model(), 2.5), tokens)
    scores = outputs["Identity:0"]
    assert scores.dtype == np.float64 and scores.shape == (len(tokens), 1)
    np.testing.assert_allclose(scores.reshape(-1), expit(raw_logits(tokens) / 2.5), rtol=0, atol=1e-12)
    np.testing.assert_allclose(outputs[LOGIT_OUTPUT].reshape(-1), raw_logits(tokens) / 2.5, rtol=1e-6)


def test_the_calibrated_graph_keeps_every_label_the_input_and_the_score_as_first_output(tokens):
    before = run(tiny_model(), tokens)["Identity:0"].reshape(-1)
    model = onnx.load_from_string(calibrated(tiny_model(), 0.3))
    assert [output.name for output in model.graph.output] == ["Identity:0", LOGIT_OUTPUT]
    assert [output.type.tensor_type.elem_type for output in model.graph.output] == [TensorProto.DOUBLE] * 2
    assert model.graph.input[0] == onnx.load_from_string(tiny_model()).graph.input[0]
    after = run(model.SerializeToString(), tokens)["Identity:0"].reshape(-1)
    assert np.array_equal(before >= 0.5, after >= 0.5)


def test_no_calibrated_score_is_exactly_0_or_1_where_the_float32_sigmoid_saturates(tokens):
    assert 30 < np.abs(raw_logits(tokens)).max() < 1.5 * 36
    before = run(tiny_model(), tokens)["Identity:0"]
    assert ((before == 0) | (before == 1)).any()  # the raw export does saturate
    after = run(calibrated(tiny_model(), 1.5), tokens)["Identity:0"]
    assert ((after > 0) & (after < 1)).all()


def test_the_temperature_is_a_float64_initializer_named_temperature():
    model = onnx.load_from_string(calibrated(tiny_model(), 1.2345678901234))
    (initializer,) = [init for init in model.graph.initializer if init.name == TEMPERATURE]
    assert initializer.data_type == TensorProto.DOUBLE
    assert temperature_of(model) == 1.2345678901234 and temperature_of(tiny_model()) is None


def test_a_calibrated_graph_is_not_calibrated_twice():
    with pytest.raises(CalibrationError, match="already calibrated"):
        calibrated(calibrated(tiny_model(), 2.0), 2.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_must_be_positive_and_finite(temperature):
    with pytest.raises(CalibrationError, match="positive number"):
        calibrated(tiny_model(), temperature)
    with pytest.raises(CalibrationError, match="positive number"):
        calibrated(tiny_model(), SignedTemperature(1.0, temperature))
    with pytest.raises(CalibrationError, match="temperature must be a positive number"):
        calibrated(tiny_model(), SignedPower(temperature, 1.0, 1.0, 1.0))
    with pytest.raises(CalibrationError, match="power must be a positive number"):
        calibrated(tiny_model(), SignedPower(1.0, 1.0, 1.0, temperature))


def test_the_signed_graph_scores_sigmoid_of_the_logit_over_the_temperature_of_its_sign(tokens):
    temperature = SignedTemperature(2.5, 1.6)
    tokens = np.concatenate([tokens, [[0, 0, -1, 0], [1, 0, -3, 0]]]).astype(np.int32)  # logits of exactly 0
    outputs = run(calibrated(tiny_model(bias=0.5), temperature), tokens)
    raw = raw_logits(tokens, bias=0.5)
    assert (raw > 0).any() and (raw < 0).any() and (raw == 0).any()  # both sides, and zero itself
    expected = expit(np.where(raw >= 0, raw / 2.5, raw / 1.6))
    scores = outputs["Identity:0"].reshape(-1)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)  # float64 all the way: far closer than 1e-6
    np.testing.assert_allclose(outputs[LOGIT_OUTPUT].reshape(-1), scaled_logits(raw, temperature), rtol=1e-6)
    assert np.array_equal(scores >= 0.5, expit(raw) >= 0.5)
    assert ((scores > 0) & (scores < 1)).all()


def test_the_signed_temperatures_are_float64_initializers_that_temperature_of_reads():
    model = onnx.load_from_string(calibrated(tiny_model(), SignedTemperature(1.25, 0.75)))
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    assert initializers["temperature_positive"] == initializers["temperature_negative"] == TensorProto.DOUBLE
    assert TEMPERATURE not in initializers
    assert temperature_of(model) == SignedTemperature(1.25, 0.75)
    with pytest.raises(CalibrationError, match="already calibrated"):
        calibrated(model.SerializeToString(), 2.0)


def test_the_signed_power_graph_scores_sigmoid_of_the_numpy_formula(tokens):
    power = SignedPower(4.0, 1.3, 0.6, 0.55)  # logits up to about +-40 stay within +-36.7 after the map
    tokens = np.concatenate([tokens, [[0, 0, -1, 0], [1, 0, -3, 0]]]).astype(np.int32)  # logits of exactly 0
    raw = raw_logits(tokens, bias=0.5)
    assert (raw > 0).any() and (raw < 0).any() and (raw == 0).any()
    outputs = run(calibrated(tiny_model(bias=0.5), power), tokens)
    scores, logits = outputs["Identity:0"].reshape(-1), outputs[LOGIT_OUTPUT].reshape(-1)
    # the formula written out, not through scaled_logits (the floor, |z| / e^7, does not bind at these logits)
    expected = np.where(raw >= 0, (np.abs(raw) / 4.0) ** 1.3, -((np.abs(raw) / 0.6) ** 0.55))
    assert (np.abs(expected) > np.abs(raw) / calibrate.FLOOR_TEMPERATURE)[raw != 0].all()
    assert scores.dtype == logits.dtype == np.float64
    np.testing.assert_allclose(logits, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(scores, expit(expected), rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores, expit(scaled_logits(raw, power)), rtol=0, atol=1e-12)
    assert (logits[raw == 0] == 0).all() and (scores[raw == 0] == 0.5).all()
    assert np.array_equal(scores >= 0.5, expit(raw) >= 0.5)
    assert ((scores > 0) & (scores < 1)).all()


def test_the_signed_power_is_four_float64_initializers_that_temperature_of_reads():
    model = onnx.load_from_string(calibrated(tiny_model(), SignedPower(1.25, 1.5, 0.75, 0.8)))
    initializers = {init.name: init.data_type for init in model.graph.initializer}
    names = ["temperature_positive", "power_positive", "temperature_negative", "power_negative"]
    assert [initializers[name] for name in names] == [TensorProto.DOUBLE] * 4 and TEMPERATURE not in initializers
    assert temperature_of(model) == SignedPower(1.25, 1.5, 0.75, 0.8)
    assert {node.op_type for node in model.graph.node if node.name.startswith("calibration/")} == {
        "Cast", "Less", "Where", "Abs", "Div", "Pow", "Max", "Sign", "Mul", "Clip"}
    with pytest.raises(CalibrationError, match="already calibrated"):
        calibrated(model.SerializeToString(), SignedPower(1.0, 1.0, 1.0, 1.0))
    (power,) = [init for init in model.graph.initializer if init.name == "power_negative"]
    model.graph.initializer.remove(power)
    with pytest.raises(CalibrationError, match="part of a signed power"):
        temperature_of(model)


def test_half_a_signed_temperature_is_refused():
    model = onnx.load_from_string(calibrated(tiny_model(), SignedTemperature(1.25, 0.75)))
    (negative,) = [init for init in model.graph.initializer if init.name == "temperature_negative"]
    model.graph.initializer.remove(negative)
    with pytest.raises(CalibrationError, match="half a signed temperature"):
        temperature_of(model)


@pytest.mark.parametrize("temperature", [2.0, SignedTemperature(2.0, 0.5), SignedPower(2.0, 1.5, 0.5, 0.7)])
def test_uncalibrating_gives_back_the_raw_graph_byte_for_byte(temperature):
    raw = tiny_model()
    restored = uncalibrated(calibrated(raw, temperature))
    assert restored == raw and temperature_of(restored) is None
    assert uncalibrated(raw) == raw


@pytest.mark.parametrize("first", [2.0, SignedTemperature(2.0, 0.5), SignedPower(2.0, 1.5, 0.5, 0.7)])
@pytest.mark.parametrize("second", [0.7, SignedTemperature(0.9, 1.6), SignedPower(1.1, 0.6, 1.4, 2.5)])
def test_recalibrating_a_calibrated_graph_equals_calibrating_the_raw_graph(first, second, tokens):
    again = calibrated(uncalibrated(calibrated(tiny_model(), first)), second)
    assert again == calibrated(tiny_model(), second)
    scores = run(again, tokens)["Identity:0"].reshape(-1)
    np.testing.assert_allclose(scores, expit(scaled_logits(raw_logits(tokens), second)), rtol=0, atol=1e-12)


def test_a_temperature_that_is_not_the_rewrites_ending_is_not_uncalibrated():
    model = onnx.load_from_string(tiny_model())
    model.graph.initializer.append(numpy_helper.from_array(np.array(2.0), TEMPERATURE))
    with pytest.raises(CalibrationError, match="not the ending calibrated"):
        uncalibrated(model.SerializeToString())


def test_a_graph_whose_score_is_not_a_sigmoid_is_refused():
    model = onnx.load_from_string(tiny_model())
    model.graph.node[-1].op_type = "Relu"
    with pytest.raises(CalibrationError, match="produced by Relu, not by a Sigmoid"):
        calibrated(model.SerializeToString(), 2.0)


def test_logits_are_the_final_sigmoids_input(tokens):
    np.testing.assert_allclose(calibrate.logits(tiny_model(), tokens), raw_logits(tokens), rtol=1e-6)
    np.testing.assert_allclose(calibrate.logits(calibrated(tiny_model(), 4.0), tokens), raw_logits(tokens) / 4.0,
                               rtol=1e-6)


def test_calibrate_export_fits_on_the_held_out_reviews_and_measures_on_the_test_reviews(tokens, tmp_path):
    rng = np.random.default_rng(4)
    # labels drawn from sigmoid(logit / 3): the tiny model is overconfident by a factor 3
    labels = (rng.random(len(tokens)) < expit(raw_logits(tokens) / 3)).astype(int)
    result = calibrate.calibrate_export("tiny", tiny_model(), tokens[:150], labels[:150], "the first 150", tokens[150:],
                                        labels[150:], tmp_path)
    assert 1.5 < result.temperature < 6 and result.temperature == temperature_of(result.onnx_bytes)
    record = result.calibration
    assert (record.reviews, record.test_reviews, record.fitted_on, record.bins) == (150, 150, "the first 150", 15)
    assert record.after.log_loss < record.before.log_loss and record.after.brier < record.before.brier
    assert record.before.max_score == 1.0 and 0 < record.after.min_score and record.after.max_score < 1
    assert (tmp_path / record.reliability_diagram).read_bytes().startswith(b"\x89PNG")
    np.testing.assert_array_equal(result.test_scores, run(result.onnx_bytes, tokens[150:])["Identity:0"].reshape(-1))


def test_calibrate_export_takes_a_signed_temperature_when_the_held_out_reviews_prefer_it(tmp_path):
    rng = np.random.default_rng(10)
    tokens = rng.integers(-3, 4, (3_000, WIDTH)).astype(np.int32)
    raw = raw_logits(tokens)
    # overconfident on the positive side only: labels drawn from sigmoid(logit / 3) there, sigmoid(logit) below 0
    labels = (rng.random(len(tokens)) < expit(np.where(raw >= 0, raw / 3, raw))).astype(int)
    fit, test = slice(0, 2_000), slice(2_000, None)
    result = calibrate.calibrate_export("tiny", tiny_model(), tokens[fit], labels[fit], "the first 2,000",
                                        tokens[test], labels[test], tmp_path, allow_signed=True)
    record = result.calibration
    assert record.method == "signed_temperature" and record.temperature is None
    assert SignedTemperature(record.temperature_positive, record.temperature_negative) == result.temperature == (
        temperature_of(result.onnx_bytes))
    assert 2 < record.temperature_positive < 4.5 and 0.6 < record.temperature_negative < 1.5
    assert record.selection.signed_allowed and record.selection.signed.log_loss < record.selection.single.log_loss
    np.testing.assert_array_equal(result.test_scores >= 0.5, result.before_scores >= 0.5)
    # the same reviews without permission: one temperature, with the same comparison on record
    single = calibrate.calibrate_export("tiny", tiny_model(), tokens[fit], labels[fit], "the first 2,000",
                                        tokens[test], labels[test])
    assert single.calibration.method == "temperature" and not single.calibration.selection.signed_allowed
    assert single.calibration.selection.signed == record.selection.signed


def test_calibrate_export_takes_a_signed_power_when_the_held_out_reviews_prefer_it(tmp_path):
    rng = np.random.default_rng(15)
    tokens = rng.integers(-3, 4, (4_000, WIDTH)).astype(np.int32)
    raw = raw_logits(tokens)
    truth = SignedPower(3.0, 1.6, 0.8, 0.6)  # logits up to about 20: within +-36.7 after the map
    labels = (rng.random(len(tokens)) < expit(scaled_logits(raw, truth))).astype(int)
    fit, test = slice(0, 3_000), slice(3_000, None)
    result = calibrate.calibrate_export("tiny", tiny_model(), tokens[fit], labels[fit], "the first 3,000",
                                        tokens[test], labels[test], tmp_path, allow_signed=True)
    record = result.calibration
    assert record.method == "signed_power" and record.temperature is None
    assert recorded_temperature(record) == result.temperature == temperature_of(result.onnx_bytes)
    assert record.power_positive > 1.2 and record.power_negative < 0.85
    assert record.selection.signed_power.log_loss < min(record.selection.single.log_loss,
                                                        record.selection.signed.log_loss)
    np.testing.assert_array_equal(result.test_scores >= 0.5, result.before_scores >= 0.5)
    assert (tmp_path / record.reliability_diagram).read_bytes().startswith(b"\x89PNG")
    # not allowed (a mean-pooled bag): one temperature, with the same comparison on record
    single = calibrate.calibrate_export("tiny", tiny_model(), tokens[fit], labels[fit], "the first 3,000",
                                        tokens[test], labels[test], allow_signed=False)
    assert single.calibration.method == "temperature" and single.calibration.selection == record.selection.model_copy(
        update={"signed_allowed": False})


def test_the_rewrite_check_fails_loudly_on_a_changed_label_or_a_saturated_score():
    logits = np.array([-2.0, 1.0, 3.0])
    before = expit(logits).astype(np.float32)
    after = expit(logits / 2)
    calibrate.check_rewrite(before, logits, after, logits / 2, 2.0)
    with pytest.raises(CalibrationError, match="change 1 labels"):
        calibrate.check_rewrite(before, logits, np.array([0.6, 0.6, 0.8]), logits / 2, 2.0)
    with pytest.raises(CalibrationError, match="differ from sigmoid"):
        calibrate.check_rewrite(before, logits, after + 1e-4, logits / 2, 2.0)
    huge = np.array([-800.0, 1.0, 40.0])  # beyond the float64 sigmoid's range too
    with pytest.raises(CalibrationError, match="2 calibrated scores are exactly 0 or 1"):
        calibrate.check_rewrite(expit(huge).astype(np.float32), huge, expit(huge), huge, 1.0)
    signed = SignedTemperature(2.0, 0.5)
    calibrate.check_rewrite(before, logits, expit(scaled_logits(logits, signed)), scaled_logits(logits, signed), signed)
    with pytest.raises(CalibrationError, match="differ from sigmoid"):  # one temperature where there were two
        calibrate.check_rewrite(before, logits, after, logits / 2, signed)
    power = SignedPower(2.0, 1.5, 0.5, 0.7)
    mapped = scaled_logits(logits, power)
    calibrate.check_rewrite(before, logits, expit(mapped), mapped, power)
    with pytest.raises(CalibrationError, match="differ from sigmoid"):  # a signed temperature where there was a power
        calibrate.check_rewrite(before, logits, expit(scaled_logits(logits, signed)), scaled_logits(logits, signed),
                                power)


# --- the metadata ------------------------------------------------------------------------------------------------


def calibration_record(**fields) -> dict:
    metrics = CalibrationMetrics(ece=0.02, brier=0.1, log_loss=0.3, min_score=0.01, max_score=0.99).model_dump()
    return {"fitted_on": "held-out reviews", "reviews": 100, "test_reviews": 100, "before": metrics,
            "after": metrics, **fields}


POWER_FIELDS = {"temperature_positive": 1.2, "power_positive": 1.5, "temperature_negative": 0.8, "power_negative": 0.7}


def test_the_metadata_takes_one_temperature_a_signed_one_or_a_signed_power():
    single = Calibration.model_validate(calibration_record(temperature=1.3))
    assert single.method == "temperature" and recorded_temperature(single) == 1.3
    signed = Calibration.model_validate(calibration_record(method="signed_temperature", temperature_positive=1.2,
                                                           temperature_negative=0.8))
    assert recorded_temperature(signed) == SignedTemperature(1.2, 0.8)
    power = Calibration.model_validate(calibration_record(method="signed_power", **POWER_FIELDS))
    assert recorded_temperature(power) == SignedPower(1.2, 1.5, 0.8, 0.7)
    assert Calibration.model_validate_json(power.model_dump_json()) == power


@pytest.mark.parametrize("fields", [
    {"method": "signed_temperature", "temperature_positive": 1.2},
    {"method": "signed_temperature", "temperature_negative": 0.8},
    {"method": "signed_temperature", "temperature": 1.0},
    {"method": "signed_temperature", "temperature": 1.0, "temperature_positive": 1.2, "temperature_negative": 0.8},
    {"method": "temperature"},
    {"method": "temperature", "temperature": 1.0, "temperature_positive": 1.2},
    {"method": "signed_temperature", "temperature_positive": 1.2, "temperature_negative": -0.8},
    {"method": "signed_temperature", "temperature_positive": 1.2, "temperature_negative": 0.8, "power_positive": 1.5},
    {"method": "temperature", "temperature": 1.0, "power_negative": 0.7},
    {"method": "signed_power", "temperature_positive": 1.2, "temperature_negative": 0.8},
    {"method": "signed_power", "temperature_positive": 1.2, "temperature_negative": 0.8, "power_positive": 1.5},
    {"method": "signed_power", **POWER_FIELDS, "temperature": 1.0},
    {"method": "signed_power", **{**POWER_FIELDS, "power_positive": 0.0}},
    {"method": "signed_power", **{**POWER_FIELDS, "power_negative": -1.0}},
    {"method": "signed_power", "power_positive": 1.5, "power_negative": 0.7},
    {"method": "isotonic", "temperature": 1.0},
])
def test_the_metadata_refuses_temperatures_that_do_not_fit_the_method(fields):
    with pytest.raises(ValidationError):
        Calibration.model_validate(calibration_record(**fields))


def test_the_metadata_refuses_a_signed_temperature_its_selection_did_not_allow():
    figures = {"log_loss": 0.3, "ece": 0.02}
    selection = {"folds": 5, "seed": 0, "signed_allowed": False, "single": figures, "signed": figures}
    with pytest.raises(ValidationError, match="did not allow"):
        Calibration.model_validate(calibration_record(method="signed_temperature", temperature_positive=1.2,
                                                      temperature_negative=0.8, selection=selection))
    with pytest.raises(ValidationError, match="did not allow"):
        Calibration.model_validate(calibration_record(method="signed_power", **POWER_FIELDS,
                                                      selection={**selection, "signed_power": figures}))


def test_the_metadata_refuses_a_signed_power_its_selection_did_not_compare():
    figures = {"log_loss": 0.3, "ece": 0.02}
    selection = {"folds": 5, "seed": 0, "signed_allowed": True, "single": figures, "signed": figures}
    with pytest.raises(ValidationError, match="did not compare"):
        Calibration.model_validate(calibration_record(method="signed_power", **POWER_FIELDS, selection=selection))
    accepted = Calibration.model_validate(calibration_record(method="signed_power", **POWER_FIELDS,
                                                             selection={**selection, "signed_power": figures}))
    assert accepted.selection.signed_power.log_loss == 0.3


def test_metadata_written_before_signed_temperatures_still_loads(tmp_path):
    old = json.loads((MODELS_DIR / "bigram_bag.json").read_text())
    old["calibration"].pop("selection", None)
    old["calibration"].pop("method", None)  # a record that predates the choice
    (tmp_path / "bigram_bag.json").write_text(json.dumps(old))
    calibration = read_metadata(tmp_path / "bigram_bag.json").calibration
    assert calibration.method == "temperature" and calibration.temperature > 0 and calibration.selection is None


def test_a_selection_written_before_the_signed_power_still_loads_and_chooses_as_it_did():
    old = json.loads((MODELS_DIR / "bigram_bag.json").read_text())
    calibration = old["calibration"]
    calibration["selection"].pop("signed_power", None)  # as the signed-temperature calibration wrote it
    calibration["selection"]["rule"] = "signed temperature when it is allowed and its out-of-fold log loss is lower"
    loaded = Calibration.model_validate(calibration)
    assert loaded.selection.signed_power is None and chosen_method(loaded.selection) == loaded.method
    signed = {**calibration, "method": "signed_temperature", "temperature": None, "temperature_positive": 1.2,
              "temperature_negative": 0.8, "selection": {**calibration["selection"], "signed_allowed": True}}
    assert Calibration.model_validate(signed).method == "signed_temperature"


# --- the exact explanation -----------------------------------------------------------------------------------------


def with_calibration(model, **fields):
    calibration = Calibration.model_validate(calibration_record(**fields))
    metadata = model.metadata.model_copy(update={"calibration": calibration})
    return dataclasses.replace(model, metadata=metadata)


def test_bag_shares_refuse_a_model_with_a_signed_temperature():
    bag = fakes.bag_model()
    assert BagShares.applies_to(bag)
    BagShares(with_calibration(bag, temperature=1.3))  # one temperature keeps the logit linear: accepted
    signed = with_calibration(bag, method="signed_temperature", temperature_positive=1.2, temperature_negative=0.8)
    with pytest.raises(ExplainError, match="signed_temperature calibration"):
        BagShares(signed)


def test_bag_shares_refuse_a_model_with_a_signed_power():
    power = with_calibration(fakes.bag_model(), method="signed_power", **POWER_FIELDS)
    with pytest.raises(ExplainError, match="signed_power calibration is not"):
        BagShares(power)


def test_the_bag_family_may_not_get_a_non_linear_map_and_the_others_may():
    assert not calibrate.signed_allowed({"family": "bag", "ngram_orders": [2]})
    assert calibrate.signed_allowed({"family": "conv1d"}) and calibrate.signed_allowed({"family": "conv_lstm"})


# --- the held-out reviews --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reviews, split", [(25_000, 0.2), (25_000, 0.1), (203, 0.2), (200, 0.1)])
def test_the_held_out_reviews_are_the_ones_keras_validates_on(reviews, split):
    from keras.src.trainers.data_adapters.array_slicing import train_validation_split

    seed = 3
    shuffled = np.arange(reviews)[np.random.default_rng(seed).permutation(reviews)]  # as fit.seeded_model orders them
    (_,), (validation,) = train_validation_split((shuffled,), validation_split=split)
    assert np.array_equal(held_out_indices(reviews, seed, split), validation)


def training_record(refit: Refit | None) -> TrainingRecord:
    return TrainingRecord(optimizer="adam", learning_rate=1e-3, loss="binary_crossentropy", epochs=3, batch_size=32,
                          validation_split=0.2, seed=1, train_reviews=1_000, test_reviews=1_000, epochs_run=3,
                          best_epoch=2, best_val_accuracy=0.9, seconds=1.0, data="x",
                          refit_on_all_training_reviews=refit)


def test_a_model_is_calibrated_on_its_validation_split_or_on_what_its_refit_held_out():
    validation = calibrate.calibration_reviews(training_record(None))
    assert np.array_equal(validation.indices, held_out_indices(1_000, 1, 0.2))
    assert validation.description.startswith("validation split of seed 1") and "200 reviews" in validation.description
    refit = Refit(epochs=2, train_reviews=900, seconds=1.0, held_out_split=0.1, held_out_reviews=100)
    held_out = calibrate.calibration_reviews(training_record(refit))
    assert np.array_equal(held_out.indices, held_out_indices(1_000, 1, 0.1)) and "held out of the refit" in (
        held_out.description)


def test_a_model_refitted_on_every_training_review_is_not_calibrated_on_reviews_it_was_trained_on():
    refit = Refit(epochs=2, train_reviews=1_000, seconds=1.0)
    with pytest.raises(CalibrationError, match="no held-out review is left.*retrain it"):
        calibrate.calibration_reviews(training_record(refit))


# --- the command, on a pipeline export --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_export(sample_archive, tmp_path_factory):
    """conv1d trained on the committed sample, exported without calibration."""
    from training import pipeline

    out = tmp_path_factory.mktemp("raw")
    assert pipeline.main(["--data", str(sample_archive), "--word-index", str(KERAS_WORD_INDEX),
                          "--out", str(out), "--models", "conv1d", "--epochs", "2", "--max-len", "120",
                          "--verbose", "0", "--seeds", "5", "--no-calibration"]) == 0
    return out


def test_no_calibration_exports_the_raw_sigmoid(raw_export):
    metadata = read_metadata(raw_export / "conv1d.json")
    model = onnx.load(raw_export / "conv1d.onnx")
    assert metadata.calibration is None and temperature_of(model) is None
    assert [output.type.tensor_type.elem_type for output in model.graph.output] == [TensorProto.FLOAT]
    assert not (raw_export / "conv1d_reliability.png").exists()


def test_the_command_calibrates_an_export_from_its_training_record(raw_export, sample_archive, imdb_dataset):
    before = read_metadata(raw_export / "conv1d.json")
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive)]) == 0
    after = read_metadata(raw_export / "conv1d.json")
    calibration = after.calibration
    assert calibration.temperature == temperature_of((raw_export / "conv1d.onnx").read_bytes())
    assert after.onnx_sha256 == file_sha256(raw_export / "conv1d.onnx") != before.onnx_sha256
    assert after.onnx_bytes == (raw_export / "conv1d.onnx").stat().st_size
    assert calibration.reviews == 40 and calibration.fitted_on.startswith("validation split of seed 5")
    # labels are unchanged; the test metrics are the calibrated scores'
    assert (after.test_metrics.accuracy, after.test_metrics.confusion_matrix) == (
        before.test_metrics.accuracy, before.test_metrics.confusion_matrix)
    assert after.test_metrics.loss == pytest.approx(calibration.after.log_loss)
    assert calibration.before.log_loss == pytest.approx(before.test_metrics.loss, abs=1e-5)
    # the held-out reviews are the validation split Keras measured: the raw model's accuracy on them is the
    # validation accuracy Keras recorded for the kept epoch
    tokenizer = load_tokenizer(after, raw_export)
    train = imdb_dataset["train"]
    indices = calibrate.calibration_reviews(after.training).indices
    raw = calibrate.logits((raw_export / "conv1d.onnx").read_bytes(),
                           tokenizer.encode_batch([train.texts[i] for i in indices])) * calibration.temperature
    accuracy = np.mean((raw > 0) == np.asarray(train.labels)[indices])
    assert accuracy == pytest.approx(after.training.best_val_accuracy, abs=1e-6)
    assert "## Calibration (test set)" in (raw_export / "REPORT.md").read_text()
    assert (raw_export / "conv1d_reliability.png").exists()


def test_the_command_leaves_calibrated_models_alone_and_refuses_to_calibrate_one_twice(raw_export, sample_archive,
                                                                                         capsys):
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive)]) == 0  # calibrates if needed
    checksum = file_sha256(raw_export / "conv1d.onnx")
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive)]) == 0
    assert file_sha256(raw_export / "conv1d.onnx") == checksum
    capsys.readouterr()
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive), "--models", "conv1d"]) == 2
    assert "already calibrated" in capsys.readouterr().err
    assert file_sha256(raw_export / "conv1d.onnx") == checksum


def test_the_command_recalibrates_a_calibrated_export_from_its_raw_graph(raw_export, sample_archive):
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive)]) == 0  # calibrates if needed
    first = read_metadata(raw_export / "conv1d.json")
    first_bytes = (raw_export / "conv1d.onnx").read_bytes()
    assert calibrate.main(["--out", str(raw_export), "--data", str(sample_archive), "--recalibrate",
                           "--models", "conv1d"]) == 0
    again = read_metadata(raw_export / "conv1d.json")
    calibration = again.calibration
    # fitted again from the raw logit, not from the calibrated one: the same choice and temperature(s) as before
    assert calibration.selection is not None and calibration.selection.signed_allowed  # conv1d may be signed
    assert recorded_temperature(calibration) == temperature_of((raw_export / "conv1d.onnx").read_bytes())
    assert calibration.before == first.calibration.before  # still the raw export's figures
    assert (again.test_metrics.accuracy, again.test_metrics.confusion_matrix) == (
        first.test_metrics.accuracy, first.test_metrics.confusion_matrix)
    if first.calibration.selection is not None:  # calibrated by this code: recalibrating changes nothing
        assert (raw_export / "conv1d.onnx").read_bytes() == first_bytes and calibration == first.calibration
    assert again.onnx_sha256 == file_sha256(raw_export / "conv1d.onnx")


def test_the_command_names_a_missing_model(raw_export, capsys):
    assert calibrate.main(["--out", str(raw_export), "--models", "bert"]) == 2
    assert "no model named bert" in capsys.readouterr().err


# --- the committed models ---------------------------------------------------------------------------------------

ECE_TARGET = 0.02
# Issue #15: every served model at most 0.02 on the test reviews. One temperature left conv1d, conv_lstm and
# conv1d_tuned at 0.033-0.040 and a signed temperature at 0.022-0.029; the signed power their held-out reviews
# chose (as they did for conv_lstm_tuned) brings all four under 0.02, bigram_bag keeps one temperature (robust_bag,
# whose saliences make it no longer linear in its terms, got the signed power its held-out reviews chose). The
# report says which models meet the target, and the tests below check that it says so and that they all do.


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_committed_model_is_calibrated_with_the_temperature_its_metadata_records(name):
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    calibration = metadata.calibration
    assert calibration is not None and calibration.test_reviews == metadata.test_metrics.reviews == 25_000
    model = onnx.load(MODELS_DIR / f"{name}.onnx", load_external_data=False)
    assert temperature_of(model) == recorded_temperature(calibration)
    assert [output.name for output in model.graph.output][1:] == [LOGIT_OUTPUT]
    # the method is the one the held-out comparison chose, and never a non-linear one for a mean-pooled bag
    assert calibration.method == chosen_method(calibration.selection)
    linear = logit_is_linear_in_terms(metadata.config)
    assert calibration.method == "temperature" or not linear
    assert calibration.selection.signed_allowed == (not linear)
    assert metadata.test_metrics.loss == pytest.approx(calibration.after.log_loss)
    assert calibration.after.log_loss <= calibration.before.log_loss + 1e-4  # fitted on other reviews
    assert 0 < calibration.after.min_score and calibration.after.max_score < 1
    assert (MODELS_DIR / calibration.reliability_diagram).read_bytes().startswith(b"\x89PNG")
    # at least a tenth of the IMDB training reviews a model trained on (robust_bag: 2,304 of 23,048)
    assert "test set" not in calibration.fitted_on and calibration.reviews >= 0.1 * metadata.training.train_reviews


def test_the_report_says_which_models_meet_the_calibration_target_and_which_do_not():
    after = {name: read_metadata(MODELS_DIR / f"{name}.json").calibration.after.ece for name in MODEL_NAMES}
    line = next(line for line in (MODELS_DIR / "REPORT.md").read_text().splitlines()
                if line.startswith(f"ECE at most {ECE_TARGET} after calibration:"))
    meeting, _, missing = line.partition("; above it:")
    assert {name for name in MODEL_NAMES if f"`{name}`" in meeting} == {n for n, e in after.items() if e <= ECE_TARGET}
    assert {name for name in MODEL_NAMES if f"`{name}`" in missing} == {n for n, e in after.items() if e > ECE_TARGET}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_committed_model_meets_the_calibration_target(name):
    assert read_metadata(MODELS_DIR / f"{name}.json").calibration.after.ece <= ECE_TARGET


def test_the_most_accurate_model_meets_the_calibration_target():
    metadata = [read_metadata(MODELS_DIR / f"{name}.json") for name in MODEL_NAMES]
    best = max(metadata, key=lambda meta: meta.test_metrics.accuracy)
    assert best.calibration.after.ece <= ECE_TARGET


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_committed_model_scores_the_sample_strictly_between_0_and_1(name, imdb_dataset):
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    tokens = load_tokenizer(metadata, MODELS_DIR).encode_batch(imdb_dataset["test"].texts)
    outputs = run((MODELS_DIR / f"{name}.onnx").read_bytes(), tokens)
    scores, logits = outputs[metadata_score_name(name)].reshape(-1), outputs[LOGIT_OUTPUT].reshape(-1)
    assert scores.dtype == np.float64 and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, expit(logits), rtol=0, atol=1e-12)


def metadata_score_name(name: str) -> str:
    return onnx.load(MODELS_DIR / f"{name}.onnx", load_external_data=False).graph.output[0].name


def test_the_committed_report_shows_every_models_calibration():
    report = (MODELS_DIR / "REPORT.md").read_text()
    for name in MODEL_NAMES:
        metadata = json.loads((MODELS_DIR / f"{name}.json").read_text())
        calibration = metadata["calibration"]
        assert f"![{name} reliability]({calibration['reliability_diagram']})" in report
        if calibration["method"] == "signed_power":
            temperatures = (f"T+ {calibration['temperature_positive']:.4f}, p+ {calibration['power_positive']:.4f}; "
                            f"T− {calibration['temperature_negative']:.4f}, p− {calibration['power_negative']:.4f}")
            method = "signed power"
        elif calibration["method"] == "signed_temperature":
            temperatures = f"T+ {calibration['temperature_positive']:.4f}, T− {calibration['temperature_negative']:.4f}"
            method = "signed T"
        else:
            temperatures, method = f"{calibration['temperature']:.4f}", "one T"
        selection = calibration["selection"]
        figures = ", ".join(f"{selection[key]['log_loss']:.4f}" for key in ("single", "signed", "signed_power"))
        assert f"| `{name}` | {method} ({figures}" in report
        assert f" | {temperatures} | {calibration['fitted_on']} |" in report


def test_the_committed_non_linear_models_keep_every_label_and_order_of_their_raw_export(imdb_dataset):
    signed = [name for name in MODEL_NAMES
              if read_metadata(MODELS_DIR / f"{name}.json").calibration.method != "temperature"]
    assert signed  # the convolutional and recurrent models
    for name in signed:
        metadata = read_metadata(MODELS_DIR / f"{name}.json")
        tokens = load_tokenizer(metadata, MODELS_DIR).encode_batch(imdb_dataset["test"].texts)
        served = (MODELS_DIR / f"{name}.onnx").read_bytes()
        raw_scores, raw = calibrate.scores_and_logits(uncalibrated(served), tokens)
        scores, _ = calibrate.scores_and_logits(served, tokens)
        assert raw_scores.dtype == np.float32 and np.array_equal(scores >= 0.5, raw_scores >= 0.5)
        np.testing.assert_allclose(scores, expit(scaled_logits(raw, recorded_temperature(metadata.calibration))),
                                   rtol=0, atol=1e-12)
        order = np.argsort(raw, kind="stable")
        assert (np.diff(scores[order]) >= 0).all()


@pytest.mark.parametrize("temperature", [1.3, SignedTemperature(1.2, 0.8), SignedPower(1.1, 1.3, 0.9, 0.7)])
def test_a_huge_logit_scores_below_1_and_its_logit_output_is_not_clipped(temperature):
    raw = np.array([-400.0, -50.0, -36.5, 0.5, 47.0, 400.0], dtype=np.float32)
    outputs = run_on_logits(calibrated(logit_passthrough(), temperature), raw)
    scores = outputs["score"]
    assert ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(outputs[LOGIT_OUTPUT], scaled_logits(raw.astype(np.float64), temperature), rtol=1e-12)
    assert uncalibrated(calibrated(logit_passthrough(), temperature)) == logit_passthrough()
