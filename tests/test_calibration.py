"""Temperature scaling (training/calibrate.py): the fit, the metrics, the graph rewrite, the held-out reviews,
the command on a pipeline export, and the committed models."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy.special import expit, logit

from artifacts.loading import load_tokenizer
from artifacts.metadata import Refit, TrainingRecord, read_metadata
from artifacts.vocabulary import file_sha256
from tests.conftest import KERAS_WORD_INDEX, MODEL_NAMES, MODELS_DIR
from training import calibrate
from training.calibrate import (
    LOGIT_OUTPUT,
    TEMPERATURE,
    CalibrationError,
    calibrated,
    calibration_metrics,
    expected_calibration_error,
    fit_temperature,
    held_out_indices,
    temperature_of,
)

WIDTH = 4  # tokens per review of the tiny model


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


def test_the_command_names_a_missing_model(raw_export, capsys):
    assert calibrate.main(["--out", str(raw_export), "--models", "bert"]) == 2
    assert "no model named bert" in capsys.readouterr().err


# --- the committed models ---------------------------------------------------------------------------------------

ECE_TARGET = 0.02
# Temperature scaling does not bring every model under the target: conv1d, conv_lstm and conv1d_tuned stay at
# 0.033-0.040 even with the temperature that is best on the test set itself, because their scores are off by a
# bias (too many positives or negatives at every score), which a temperature cannot move. The report says so,
# and the test below checks that it says so for exactly the models concerned.


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_committed_model_is_calibrated_with_the_temperature_its_metadata_records(name):
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    calibration = metadata.calibration
    assert calibration is not None and calibration.test_reviews == metadata.test_metrics.reviews == 25_000
    model = onnx.load(MODELS_DIR / f"{name}.onnx", load_external_data=False)
    assert temperature_of(model) == calibration.temperature
    assert [output.name for output in model.graph.output][1:] == [LOGIT_OUTPUT]
    assert metadata.test_metrics.loss == pytest.approx(calibration.after.log_loss)
    assert calibration.after.log_loss <= calibration.before.log_loss + 1e-4  # fitted on other reviews
    assert 0 < calibration.after.min_score and calibration.after.max_score < 1
    assert (MODELS_DIR / calibration.reliability_diagram).read_bytes().startswith(b"\x89PNG")
    assert "test set" not in calibration.fitted_on and calibration.reviews >= 2_500


def test_the_report_says_which_models_meet_the_calibration_target_and_which_do_not():
    after = {name: read_metadata(MODELS_DIR / f"{name}.json").calibration.after.ece for name in MODEL_NAMES}
    line = next(line for line in (MODELS_DIR / "REPORT.md").read_text().splitlines()
                if line.startswith(f"ECE at most {ECE_TARGET} after calibration:"))
    meeting, _, missing = line.partition("; above it:")
    assert {name for name in MODEL_NAMES if f"`{name}`" in meeting} == {n for n, e in after.items() if e <= ECE_TARGET}
    assert {name for name in MODEL_NAMES if f"`{name}`" in missing} == {n for n, e in after.items() if e > ECE_TARGET}


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
        assert f"![{name} reliability]({metadata['calibration']['reliability_diagram']})" in report
        assert f"| `{name}` | {metadata['calibration']['temperature']:.4f} |" in report
