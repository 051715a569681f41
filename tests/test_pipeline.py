"""End to end on a small sample: data -> tokenizer -> both models -> evaluation -> ONNX -> parity -> calibration
-> files;
the metadata schema on what the pipeline writes and on the committed models; the cheap checks before TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from artifacts.metadata import read_metadata
from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import file_sha256, load_word_index
from tests.conftest import MODEL_NAMES, MODELS_DIR, REPO_ROOT
from training import pipeline, presets
from training.data import DATA_DIR_ENV, load_imdb

# The Keras word index's 19,996 most frequent words, unchanged: enough for every preset, and committed.
WORD_INDEX = MODELS_DIR / "vocab_20000.json"


@pytest.fixture(scope="module")
def smoke_run(sample_archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    code = pipeline.main(["--data", str(sample_archive), "--word-index", str(WORD_INDEX), "--out", str(out),
                          "--epochs", "1", "--max-len", "120", "--verbose", "0", "--seeds", "5", "6"])
    assert code == 0
    return out


def test_writes_every_artifact(smoke_run):
    names = {path.name for path in smoke_run.iterdir()}
    for model in ("conv1d", "conv_lstm"):
        assert {f"{model}.onnx", f"{model}.json", f"{model}_history.json", f"{model}_history.png",
                f"{model}_reliability.png"} <= names
    assert {"vocab_10000.json", "REPORT.md"} <= names


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_metadata_describes_the_export(smoke_run, name):
    metadata = read_metadata(smoke_run / f"{name}.json")  # fits the schema the service reads
    assert metadata.name == name and metadata.max_len == 120 and metadata.num_words == 10_000
    assert metadata.onnx_sha256 == file_sha256(smoke_run / f"{name}.onnx")
    assert metadata.onnx_bytes == (smoke_run / f"{name}.onnx").stat().st_size
    assert metadata.vocabulary.sha256 == file_sha256(smoke_run / "vocab_10000.json")
    assert metadata.input.name == "tokens" and metadata.input.shape == [None, 120]
    assert metadata.parity_max_abs_diff <= 1e-5
    assert metadata.test_metrics.reviews == 200
    matrix = metadata.test_metrics.confusion_matrix
    assert matrix.tn + matrix.fp + matrix.fn + matrix.tp == 200
    assert metadata.training.train_reviews == 200 and metadata.training.epochs == 1
    assert metadata.training.validation_split == 0.2 and metadata.training.data.endswith("sample.tar.gz")
    assert metadata.training.refit_on_all_training_reviews is None
    candidates = metadata.training.seed_candidates
    assert [run.seed for run in candidates] == [5, 6]
    assert metadata.training.best_val_accuracy == max(run.best_val_accuracy for run in candidates)
    assert metadata.parameters == sum(layer.params for layer in metadata.architecture) > 0
    assert metadata.config["family"] == name and metadata.config["max_len"] == 120
    import h5py

    with h5py.File(smoke_run / "keras" / f"{name}.weights.h5") as weights:
        assert "layers" in weights and "optimizer" not in weights  # the model's weights only
    assert {"tensorflow", "keras", "tf2onnx", "onnxruntime"} <= set(metadata.library_versions)
    assert metadata.created is not None and metadata.created.utcoffset().total_seconds() == 0
    history = json.loads((smoke_run / f"{name}_history.json").read_text())
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"} and len(history["loss"]) == 1


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_onnx_model_reproduces_reported_accuracy(smoke_run, sample_archive, name):
    """Scores from the written ONNX file, tokenized by the written vocabulary, give the metadata's accuracy."""
    metadata = read_metadata(smoke_run / f"{name}.json")
    tokenizer = Tokenizer(load_word_index(smoke_run / "vocab_10000.json"), 10_000, 120)
    test = load_imdb(sample_archive)["test"]
    session = ort.InferenceSession(str(smoke_run / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"tokens": tokenizer.encode_batch(test.texts)})[0].reshape(-1)
    accuracy = float(np.mean((scores >= 0.5) == np.asarray(test.labels)))
    assert accuracy == pytest.approx(metadata.test_accuracy, abs=1e-9)


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_the_exports_are_calibrated_on_the_kept_runs_validation_split(smoke_run, name):
    import onnx
    from onnx import TensorProto

    from training.calibrate import LOGIT_OUTPUT, recorded_temperature, temperature_of

    metadata = read_metadata(smoke_run / f"{name}.json")
    calibration = metadata.calibration
    assert (calibration.reviews, calibration.test_reviews) == (40, 200)  # the last fifth of 200 training reviews
    assert calibration.fitted_on.startswith(f"validation split of seed {metadata.training.seed} ")
    model = onnx.load(smoke_run / f"{name}.onnx")
    assert temperature_of(model) == recorded_temperature(calibration)  # whichever method the held-out reviews chose
    assert [(output.name, output.type.tensor_type.elem_type) for output in model.graph.output] == [
        ("Identity:0", TensorProto.DOUBLE), (LOGIT_OUTPUT, TensorProto.DOUBLE)]
    assert metadata.test_metrics.loss == pytest.approx(calibration.after.log_loss)
    assert 0 < calibration.after.min_score and calibration.after.max_score < 1
    assert (smoke_run / calibration.reliability_diagram).read_bytes().startswith(b"\x89PNG")


def test_report_answers_which_model_is_better(smoke_run):
    report = (smoke_run / "REPORT.md").read_text()
    assert "has the better test accuracy" in report
    assert "conv1d_history.png" in report and "conv_lstm_history.png" in report
    assert "## Seed selection" in report
    assert "## Calibration (test set)" in report and "![conv1d reliability](conv1d_reliability.png)" in report


def test_parity_check_fails_loudly():
    from training.export import ParityError, check_parity

    tokens = np.zeros((3, 10), dtype=np.int32)
    with pytest.raises(ParityError, match="differ from Keras"):
        check_parity(_constant_onnx(10, 0.5), np.array([0.5, 0.5, 0.6]), tokens)
    assert check_parity(_constant_onnx(10, 0.5), np.array([0.5, 0.5, 0.5]), tokens) == 0.0


def _constant_onnx(width: int, value: float) -> bytes:
    """A tiny ONNX model mapping int32 [n, width] to a constant [n, 1] score."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["tokens"], ["as_float"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["as_float", "axes"], ["summed"], keepdims=1),
         helper.make_node("Mul", ["summed", "zero"], ["zeroed"]),
         helper.make_node("Add", ["zeroed", "value"], ["score"])],
        "constant",
        [helper.make_tensor_value_info("tokens", TensorProto.INT32, [None, width])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                     helper.make_tensor("value", TensorProto.FLOAT, [], [value])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_bad_data_path_is_a_one_line_error(tmp_path, capsys):
    assert pipeline.main(["--data", str(tmp_path / "missing.tar.gz"), "--word-index", str(WORD_INDEX),
                          "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "missing.tar.gz does not exist" in error


def test_data_missing_from_the_setting_is_a_one_line_error_naming_the_setting_and_make_data(tmp_path, monkeypatch,
                                                                                               capsys):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert pipeline.main(["--out", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"{DATA_DIR_ENV}={tmp_path}" in error and "`make data`" in error and "aclImdb_v1.tar.gz" in error
    assert not (tmp_path / "models").exists()


def test_the_pipeline_reads_the_files_the_data_setting_names(sample_archive, tmp_path, monkeypatch):
    (tmp_path / "aclImdb_v1.tar.gz").symlink_to(sample_archive)
    (tmp_path / "imdb_word_index.json").symlink_to(WORD_INDEX)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    args = pipeline.parse_args([])
    assert (args.data, args.word_index) == (tmp_path / "aclImdb_v1.tar.gz", tmp_path / "imdb_word_index.json")
    dataset, word_index = pipeline.read_inputs(args)
    assert len(dataset["train"]) == len(dataset["test"]) == 200 and word_index["the"] == 1


@pytest.mark.parametrize("module", ["training", "training.explore"])
def test_a_bad_data_path_fails_before_tensorflow_is_imported(module, tmp_path):
    code = (f"import sys, runpy; sys.argv = ['{module}', '--data', {str(tmp_path / 'missing.tar.gz')!r}]\n"
            "try:\n"
            f"    runpy.run_module('{module}', run_name='__main__')\n"
            "except SystemExit as exit:\n"
            "    print(exit.code, sorted({'keras', 'tensorflow', 'training.fit'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "2 []", result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_committed_metadata_file_fits_the_schema(name):
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    assert metadata.name == name and metadata.onnx_sha256 == file_sha256(MODELS_DIR / f"{name}.onnx")
    assert metadata.test_metrics is not None and metadata.training is not None


def test_the_report_written_from_the_committed_metadata_is_the_committed_report(tmp_path):
    from training import evaluate

    everything = [read_metadata(MODELS_DIR / f"{name}.json") for name in MODEL_NAMES]
    experiments = json.loads((MODELS_DIR / "experiments.json").read_text())
    robust_experiments = json.loads((MODELS_DIR / "robust_experiments.json").read_text())
    evaluate.write_report(everything, tmp_path / "REPORT.md", experiments, robust_experiments)
    assert (tmp_path / "REPORT.md").read_text() == (MODELS_DIR / "REPORT.md").read_text()


def test_report_only_rewrites_the_report(smoke_run):
    (smoke_run / "REPORT.md").unlink()
    assert pipeline.main(["--report-only", "--out", str(smoke_run)]) == 0
    assert "has the better test accuracy" in (smoke_run / "REPORT.md").read_text()


def test_bag_preset_refits_on_the_training_reviews_but_a_tenth_held_out_for_the_temperature(sample_archive,
                                                                                              tmp_path):
    from training.calibrate import held_out_indices, temperature_of

    code = pipeline.main(["--data", str(sample_archive), "--word-index", str(WORD_INDEX), "--out", str(tmp_path),
                          "--models", "bigram_bag", "--epochs", "2", "--max-len", "120", "--verbose", "0",
                          "--seeds", "5"])
    assert code == 0
    metadata = read_metadata(tmp_path / "bigram_bag.json")
    training = metadata.training
    refit = training.refit_on_all_training_reviews
    assert refit.epochs == training.best_epoch >= 1
    assert (refit.train_reviews, refit.held_out_reviews, refit.held_out_split) == (180, 20, 0.1)
    assert metadata.num_words == 20_000 and metadata.parity_max_abs_diff <= 1e-5
    calibration = metadata.calibration
    assert calibration.reviews == 20 and "held out of the refit" in calibration.fitted_on
    assert calibration.temperature == temperature_of((tmp_path / "bigram_bag.onnx").read_bytes())
    # the held-out reviews are the last tenth of the seed's shuffle, as Keras held them out of the refit
    assert len(held_out_indices(200, 5, 0.1)) == 20 and set(held_out_indices(200, 5, 0.1)) <= set(
        held_out_indices(200, 5, 0.2))
    # the refitted model is the one evaluated and exported: its ONNX scores give the reported accuracy
    tokenizer = Tokenizer(load_word_index(tmp_path / "vocab_20000.json"), 20_000, 120)
    test = load_imdb(sample_archive)["test"]
    session = ort.InferenceSession(str(tmp_path / "bigram_bag.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"tokens": tokenizer.encode_batch(test.texts)})[0].reshape(-1)
    assert float(np.mean((scores >= 0.5) == np.asarray(test.labels))) == pytest.approx(
        metadata.test_accuracy, abs=1e-9)


def counterfactual_folder(sample_archive, folder):
    """The sample archive with a cad/ folder beside it: three training and two dev pairs, each a sample training
    review and a copy with a sentence added that flips its label."""
    folder.mkdir()
    (folder / sample_archive.name).write_bytes(sample_archive.read_bytes())
    train = load_imdb(sample_archive)["train"]
    flips = {1: "Not good at all, I hated it.", 0: "Not bad at all, I loved it."}
    (folder / "cad").mkdir()
    for file, indices in (("train_paired.tsv", (0, 1, 198)), ("dev_paired.tsv", (2, 199))):
        rows = [f"{'Positive' if label else 'Negative'}\t{text}\t{i}"
                for i in indices for text, label in ((train.texts[i], train.labels[i]),
                                                     (f"{train.texts[i]} {flips[train.labels[i]]}",
                                                      1 - train.labels[i]))]
        (folder / "cad" / file).write_text("Sentiment\tText\tbatch_id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return folder / sample_archive.name


def test_a_robust_preset_trains_with_counterfactual_pairs_and_reports_its_robustness(sample_archive, tmp_path):
    data = counterfactual_folder(sample_archive, tmp_path / "data")
    out = tmp_path / "models"
    code = pipeline.main(["--data", str(data), "--word-index", str(WORD_INDEX), "--out", str(out),
                          "--models", "robust_bag", "--epochs", "1", "--max-len", "120", "--verbose", "0",
                          "--seeds", "5"])
    assert code == 0
    metadata = read_metadata(out / "robust_bag.json")
    counterfactual = metadata.training.counterfactual
    assert (counterfactual.train_pairs, counterfactual.left_out_originals, counterfactual.copies) == (3, 5, 5)
    rule = presets.get("robust_bag").tokenizer
    assert metadata.training.train_reviews == 195 and metadata.tokenizer == rule
    # short texts are read by a second bag, trained on sentences, chosen in the graph by the text's length
    short = metadata.training.short_texts
    assert (short.words, short.cad_sentence_copies) == (40, 8) and short.best_epoch >= 1
    assert short.validation_sentences > 0 and short.refit_sentences > short.fit_sentences  # the refit saw more
    assert {"whole_reviews", "short_texts", "route_by_length"} <= {layer.name for layer in metadata.architecture}
    robustness = metadata.robustness
    assert robustness.cad_dev_pairs == 2 and not robustness.cad_dev_originals_in_training
    assert robustness.checklist_reviews >= 300 and robustness.snippet_reviews > 150
    # the export reads negated words apart: its input takes ids up to twice the vocabulary
    session = ort.InferenceSession(str(out / "robust_bag.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer(load_word_index(out / "vocab_20000.json"), 20_000, 120, rule)
    tokens = tokenizer.encode_batch(["not good", "good"])
    assert tokens.max() >= 20_000
    scores = session.run(None, {"tokens": tokens})[0].reshape(-1)
    assert scores[0] != scores[1]
    assert "## Robustness" in (out / "REPORT.md").read_text()


def test_a_counterfactual_preset_without_the_pairs_is_a_one_line_error(sample_archive, tmp_path, capsys):
    code = pipeline.main(["--data", str(sample_archive), "--word-index", str(WORD_INDEX), "--out", str(tmp_path),
                          "--models", "robust_bag", "--epochs", "1", "--max-len", "120", "--verbose", "0"])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "robust_bag" in error and "cad/" in error


def test_reviews_made_from_a_held_out_review_are_held_out_with_it():
    from training.fit import split_shuffled

    x, y = np.arange(10)[:, None], np.arange(10) % 2
    order = np.arange(10)[::-1]  # the last fifth of the shuffle, reviews 1 and 0, is held out
    extra = (np.array([[100], [101], [102]]), np.array([1, 0, 1]), np.array([-1, 0, 5]))  # 101 was made from 0
    (fit_x, fit_y), (held_x, _) = split_shuffled(x, y, order, 0.2, extra)
    assert sorted(held_x.ravel().tolist()) == [0, 1]
    assert sorted(fit_x.ravel().tolist()) == [2, 3, 4, 5, 6, 7, 8, 9, 100, 102] and len(fit_y) == 10
    (everything, _), nothing_held = split_shuffled(x, y, order, 0.0, extra)
    assert len(everything) == 13 and nothing_held is None
