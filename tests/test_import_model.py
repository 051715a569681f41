"""`python -m training.import_model`: Keras models trained elsewhere (the course's layout, with its linear last
layer), saved as Keras 3 `.keras`, Keras 3's legacy `.h5` and Keras 2's `.h5` (what tf.keras and R's
`save_model_hdf5` write), imported and scored by the service exactly as Keras scores them, after the sigmoid the
import adds to a logit, or the clipping it applies to a linear output trained as a probability; calibration and
evaluation with data and without; and the one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
from artifacts.vocabulary import file_sha256
from service.repository import ModelRepository
from tests.conftest import MODELS_DIR, REPO_ROOT, read_sample_reviews
from training import import_model
from training.data import DATA_DIR_ENV, LABELED_ARCHIVE, WORD_INDEX_FILE

WORD_INDEX = MODELS_DIR / "vocab_20000.json"  # the Keras IMDB word index's 19,996 most frequent words
KERAS2_MODEL = REPO_ROOT / "tests" / "data" / "course_conv1d_keras2.h5"  # tests/data/make_keras2_model.py
KERAS2_OUTPUTS = REPO_ROOT / "tests" / "data" / "course_conv1d_keras2.json"
NUM_WORDS, MAX_LEN = 300, 64


def course_model(num_words: int = NUM_WORDS, max_len: int = MAX_LEN, seed: int = 0,
                 activation: str | None = None) -> keras.Model:
    """The course's 1D convnet, smaller: Embedding -> Conv1D(7, relu) -> MaxPooling1D(5) -> Conv1D(7, relu) ->
    GlobalMaxPooling1D -> Dense(1) with no activation (as `layer_dense(units = 1)`), or ``activation``. Its weights
    give logits of a few units either way, so a missing or doubled sigmoid cannot pass for the right one."""
    keras.utils.set_random_seed(seed)
    model = course_layout(num_words, max_len)
    rng = np.random.default_rng(seed)
    for layer, scale in zip(model.layers, (1.0, 0.3, 0, 0.3, 0), strict=False):
        if scale:
            kernel, bias = layer.get_weights() if len(layer.get_weights()) == 2 else (*layer.get_weights(), None)
            weights = [rng.normal(0, scale, kernel.shape)]
            layer.set_weights(weights + ([rng.normal(0, 0.1, bias.shape)] if bias is not None else []))
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    raw = logits(model, import_model.parity_tokens(num_words, max_len)) - bias[0]
    spread = 3.0 / raw.std()
    dense.set_weights([kernel * spread, np.array([-spread * np.median(raw)])])
    if activation is None:
        return model
    with_activation = course_layout(num_words, max_len, activation)  # the same weights: the scaling needs logits
    with_activation.set_weights(model.get_weights())
    return with_activation


def course_layout(num_words: int, max_len: int, activation: str | None = None) -> keras.Model:
    return keras.Sequential([
        keras.Input((max_len,)),  # float32, as Keras 2 and R build a Sequential model's input
        layers.Embedding(num_words, 16),
        layers.Conv1D(8, 7, activation="relu"),
        layers.MaxPooling1D(5),
        layers.Conv1D(8, 7, activation="relu"),
        layers.GlobalMaxPooling1D(),
        layers.Dense(1, activation=activation),
    ])


def logits(model: keras.Model, tokens: np.ndarray) -> np.ndarray:
    return model.predict(tokens, verbose=0).reshape(-1).astype(np.float64)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-values))


def run_import(path: Path, out: Path, *options: str, name: str = "course") -> int:
    return import_model.main([str(path), "--name", name, "--out", str(out), "--word-index", str(WORD_INDEX),
                              *options])


def served(out: Path, name: str = "course"):
    """The model as the service loads it (its start-up checks included), warmed up."""
    repository = ModelRepository.load(out)
    repository.warm_up()
    return repository.models[name]


def review_tokens(model) -> np.ndarray:
    """Real reviews as the served model reads them, and random token rows of every length."""
    texts = [review["text"] for review in read_sample_reviews()[:64]]
    return np.concatenate([model.tokenizer.encode_batch(texts),
                           import_model.parity_tokens(model.metadata.num_words, model.metadata.max_len, seed=9)])


@pytest.fixture(autouse=True)
def no_imdb_data(tmp_path, monkeypatch):
    """No data folder unless a test makes one (the real dataset beside the checkout would take minutes)."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(empty))


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "models"


# ---- imported and scored as Keras scores

@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_course_model_with_a_linear_last_layer_is_served_as_sigmoid_of_its_output(tmp_path, out, capsys, suffix):
    model = course_model()
    path = tmp_path / f"my_model{suffix}"
    model.save(path)  # .h5: Keras 3's legacy HDF5 writer
    assert run_import(path, out) == 0
    report = capsys.readouterr().out
    assert "its output is a logit, and the export adds a sigmoid" in report and "calibration skipped" in report

    loaded = served(out)
    tokens = review_tokens(loaded)
    expected = sigmoid(logits(model, tokens))
    assert np.abs(loaded.predict(tokens) - expected).max() <= 1e-5
    assert expected.min() < 0.1 and expected.max() > 0.9  # the sigmoid matters: logits far from 0 either way

    metadata = read_metadata(out / "course.json")
    assert (metadata.num_words, metadata.max_len) == (NUM_WORDS, MAX_LEN)
    assert metadata.imported.output == "logits" and metadata.imported.sigmoid_added and not metadata.imported.clipped
    assert metadata.imported.trained_with is None  # not compiled: nothing says the output is not a logit
    assert metadata.imported.format == suffix[1:] and metadata.imported.saved_by_keras == keras.__version__
    assert metadata.imported.num_words_from == "embedding" and metadata.imported.max_len_from == "input"
    assert metadata.imported.source_sha256 == file_sha256(path)
    assert metadata.parity_max_abs_diff <= 1e-5 and metadata.parameters == model.count_params()
    assert [layer.type for layer in metadata.architecture][-2:] == ["Dense", "Activation"]
    assert metadata.training is None and metadata.test_metrics is None and metadata.calibration is None
    assert "--calibration-data" in metadata.imported.calibration_skipped
    assert metadata.vocabulary.file == "vocab_course.json"
    vocabulary = json.loads((out / "vocab_course.json").read_text())
    assert len(vocabulary) == NUM_WORDS - 4 and max(vocabulary.values()) == NUM_WORDS - 4


def test_a_course_model_saved_by_keras_2_as_the_listing_compiles_it_scores_as_keras_2_did(out, capsys):
    # Written by tf-keras 2.21 (tests/data/make_keras2_model.py): the HDF5 layout of tf.keras and R's keras, with
    # the Keras 2 configuration (Embedding's input_length, batch_input_shape), compiled as the course's listing is:
    # binary_crossentropy on the bare Dense(1) output, which the loss reads as a probability, clipped.
    reference = json.loads(KERAS2_OUTPUTS.read_text())
    assert run_import(KERAS2_MODEL, out) == 0
    report = capsys.readouterr().out
    assert "written by Keras 2.21.0" in report and "trained with binary_crossentropy on its output as a " \
        "probability" in report and "clips it to [1e-07, 1 - 1e-07]" in report
    loaded = served(out)
    tokens = np.asarray(reference["tokens"], np.int32)
    outputs = np.asarray(reference["outputs"])
    assert outputs.min() < 0 and outputs.max() > 1  # clipping matters on both sides
    assert np.abs(loaded.predict(tokens) - np.clip(outputs, 1e-7, 1 - 1e-7)).max() <= 1e-5
    metadata = read_metadata(out / "course.json")
    assert (metadata.num_words, metadata.max_len) == (reference["num_words"], reference["max_len"])
    assert metadata.imported.saved_by_keras == "2.21.0" and metadata.imported.trained_with == "binary_crossentropy"
    assert metadata.imported.output == "probability" and metadata.imported.clipped
    assert not metadata.imported.sigmoid_added
    assert "clipped" in metadata.imported.calibration_skipped


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_a_linear_output_trained_with_binary_crossentropy_is_served_clipped_unless_said_to_be_logits(
        tmp_path, out, capsys, suffix):
    model = course_model()
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])  # the course's compile()
    model.save(tmp_path / f"listing{suffix}")
    assert run_import(tmp_path / f"listing{suffix}", out) == 0
    tokens = review_tokens(served(out))
    outputs = logits(model, tokens)
    assert np.abs(served(out).predict(tokens) - np.clip(outputs, 1e-7, 1 - 1e-7)).max() <= 1e-5
    assert read_metadata(out / "course.json").imported.clipped
    capsys.readouterr()
    assert run_import(tmp_path / f"listing{suffix}", out, "--output", "logits", "--replace") == 0
    assert "--output logits: the export adds a sigmoid" in capsys.readouterr().out
    assert np.abs(served(out).predict(tokens) - sigmoid(outputs)).max() <= 1e-5


def test_a_linear_output_trained_with_from_logits_gets_the_sigmoid(tmp_path, out, capsys):
    model = course_model()
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.save(tmp_path / "logits.keras")
    assert run_import(tmp_path / "logits.keras", out) == 0
    assert "trained with BinaryCrossentropy(from_logits=True)): its output is a logit" in capsys.readouterr().out
    tokens = review_tokens(served(out))
    assert np.abs(served(out).predict(tokens) - sigmoid(logits(model, tokens))).max() <= 1e-5
    assert read_metadata(out / "course.json").imported.trained_with == "BinaryCrossentropy(from_logits=True)"


def test_a_model_that_ends_in_a_sigmoid_is_served_as_it_is(tmp_path, out, capsys):
    model = course_model(activation="sigmoid")
    model.save(tmp_path / "my_model.keras")
    assert run_import(tmp_path / "my_model.keras", out, "--output", "probability") == 0
    assert "it ends in a sigmoid: its output is the probability" in capsys.readouterr().out
    loaded = served(out)
    tokens = review_tokens(loaded)
    assert np.abs(loaded.predict(tokens) - logits(model, tokens)).max() <= 1e-5
    metadata = read_metadata(out / "course.json")
    assert metadata.imported.output == "probability" and not metadata.imported.sigmoid_added


def test_the_options_set_the_length_of_a_model_of_any_length_and_a_smaller_vocabulary(tmp_path, out):
    tokens = keras.Input((None,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(NUM_WORDS, 8)(tokens))
    model = keras.Model(tokens, layers.Dense(1)(pooled))
    model.save(tmp_path / "any_length.keras")
    assert run_import(tmp_path / "any_length.keras", out, "--max-len", "40", "--num-words", "200") == 0
    metadata = read_metadata(out / "course.json")
    assert (metadata.num_words, metadata.max_len) == (200, 40)
    assert (metadata.imported.num_words_from, metadata.imported.max_len_from) == ("option", "option")
    loaded = served(out)
    rows = loaded.tokenizer.encode_batch(["a thoroughly enjoyable film", "a waste of time"])
    assert rows.max() < 200  # words past the 200th id read as unknown
    assert np.abs(loaded.predict(rows) - sigmoid(logits(model, rows))).max() <= 1e-5


def test_the_vocabulary_file_of_the_folder_is_shared_when_it_holds_the_same_words(tmp_path, out):
    out.mkdir()
    shutil.copy(MODELS_DIR / "vocab_10000.json", out / "vocab_10000.json")
    course_model().save(tmp_path / "small.h5")
    assert run_import(tmp_path / "small.h5", out) == 0
    assert read_metadata(out / "course.json").vocabulary.file == "vocab_course.json"  # 300 ids: its own
    course_model(num_words=10_000).save(tmp_path / "big.h5")
    assert run_import(tmp_path / "big.h5", out, "--replace") == 0
    metadata = read_metadata(out / "course.json")
    assert metadata.vocabulary.file == "vocab_10000.json" and not (out / "vocab_course.json").exists()
    assert load_tokenizer(metadata, out).num_words == 10_000
    assert sorted(path.name for path in out.iterdir()) == ["course.json", "course.onnx", "vocab_10000.json"]


# ---- calibration and evaluation

@pytest.fixture
def imdb_sample_data(tmp_path, sample_archive, monkeypatch) -> Path:
    """A data folder with the committed sample (200 train and 200 test reviews) as the dataset archive."""
    folder = tmp_path / "imdb"
    folder.mkdir()
    shutil.copy(sample_archive, folder / LABELED_ARCHIVE)
    shutil.copy(WORD_INDEX, folder / WORD_INDEX_FILE)
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))
    return folder


def test_with_held_out_reviews_and_the_test_set_the_export_is_calibrated_and_evaluated(tmp_path, out, capsys,
                                                                                        imdb_sample_data):
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"text": review["text"], "label": review["label"]}) + "\n"
                                for review in read_sample_reviews() if review["split"] == "train"))
    course_model().save(tmp_path / "my_model.h5")
    code = import_model.main([str(tmp_path / "my_model.h5"), "--name", "course", "--out", str(out),
                              "--calibration-data", str(held_out), "--evaluate"])  # the word index of the data
    assert code == 0
    report = capsys.readouterr().out
    assert "calibrated (" in report and "IMDB test set (200 reviews)" in report
    metadata = read_metadata(out / "course.json")
    assert metadata.calibration.reviews == 200 and metadata.calibration.test_reviews == 200
    assert metadata.calibration.fitted_on.startswith("held_out.jsonl")
    assert metadata.test_metrics.reviews == 200
    assert metadata.imported.calibration_skipped is None and metadata.imported.evaluation_skipped is None
    assert metadata.imported.word_index == WORD_INDEX_FILE
    assert (out / "course_reliability.png").is_file()
    loaded = served(out)
    assert loaded.logit_output is not None  # the calibrated graph's logit, as the pipeline's exports have it


def test_without_data_evaluation_and_calibration_are_skipped_and_say_so(tmp_path, out, capsys):
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text('{"text": "great", "label": 1}\n{"text": "awful", "label": 0}\n')
    course_model().save(tmp_path / "my_model.h5")
    assert run_import(tmp_path / "my_model.h5", out, "--evaluate", "--calibration-data", str(held_out)) == 0
    report = capsys.readouterr().out
    assert "evaluation skipped: aclImdb_v1_labeled.tar.gz or aclImdb_v1.tar.gz not found" in report
    assert "calibration skipped: the IMDB test set" in report
    metadata = read_metadata(out / "course.json")
    assert metadata.test_metrics is None and metadata.calibration is None
    assert metadata.imported.evaluation_skipped and metadata.imported.calibration_skipped


# ---- one-line errors

def expect_error(capsys, code: int, *fragments: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_a_missing_file(tmp_path, out, capsys):
    expect_error(capsys, run_import(tmp_path / "nowhere.h5", out), "nowhere.h5: no such file")
    assert not out.exists()


@pytest.mark.parametrize("suffix, content, message", [
    (".h5", b"\x89HDF\r\n garbage, not HDF5", "not a readable HDF5 file"),
    (".keras", b"PK\x03\x04 garbage, not a zip", "not a readable .keras archive"),
    (".txt", b"hello", "expected a Keras model file"),
])
def test_a_corrupt_file(tmp_path, out, capsys, suffix, content, message):
    (tmp_path / f"broken{suffix}").write_bytes(content)
    expect_error(capsys, run_import(tmp_path / f"broken{suffix}", out), message)


def test_a_truncated_model_file(tmp_path, out, capsys):
    course_model().save(tmp_path / "whole.keras")
    data = (tmp_path / "whole.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    expect_error(capsys, run_import(tmp_path / "cut.keras", out), "cut.keras: not a readable .keras archive")


def test_a_weights_only_file(tmp_path, out, capsys):
    course_model().save_weights(tmp_path / "my_model.weights.h5")
    expect_error(capsys, run_import(tmp_path / "my_model.weights.h5", out), "without a model configuration")


def functional(input_shape: tuple, dtype: str, head) -> keras.Model:
    tokens = keras.Input(input_shape, dtype=dtype)
    return keras.Model(tokens, head(tokens))


WRONG_SHAPES = {
    "features, not token ids": (
        lambda: functional((30, 8), "float32", lambda x: layers.Dense(1)(layers.GlobalAveragePooling1D()(x))),
        "input has shape (batch, 30, 8); expected (batch, length) token ids"),
    "floats into a dense layer": (
        lambda: functional((30,), "float32", lambda x: layers.Dense(1)(x)),
        "goes into no Embedding layer: not integer token ids"),
    "two classes": (
        lambda: functional((30,), "int32", lambda x: layers.Dense(2, activation="softmax")(
            layers.GlobalAveragePooling1D()(layers.Embedding(50, 4)(x)))),
        "output has shape (batch, 2); expected (batch, 1)"),
    "one score per token": (
        lambda: functional((30,), "int32", lambda x: layers.Dense(1)(layers.Embedding(50, 4)(x))),
        "output has shape (batch, 30, 1)"),
    "a length to be given": (
        lambda: functional((None,), "int32", lambda x: layers.Dense(1)(
            layers.GlobalAveragePooling1D()(layers.Embedding(50, 4)(x)))),
        "reads reviews of any length: give the length"),
}


@pytest.mark.parametrize("case", list(WRONG_SHAPES))
def test_another_input_or_output_shape(tmp_path, out, capsys, case):
    build, message = WRONG_SHAPES[case]
    build().save(tmp_path / "model.keras")
    expect_error(capsys, run_import(tmp_path / "model.keras", out), message)
    assert not out.exists()


def test_two_inputs(tmp_path, out, capsys):
    first, second = keras.Input((10,), dtype="int32"), keras.Input((10,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layers.Embedding(50, 4)(layers.Concatenate()([first, second])))
    keras.Model([first, second], layers.Dense(1)(pooled)).save(tmp_path / "two.keras")
    expect_error(capsys, run_import(tmp_path / "two.keras", out), "the model has 2 inputs")


def test_a_name_already_served_needs_replace(tmp_path, out, capsys):
    course_model(seed=1).save(tmp_path / "first.h5")
    course_model(seed=2).save(tmp_path / "second.h5")
    assert run_import(tmp_path / "first.h5", out) == 0
    first = read_metadata(out / "course.json").onnx_sha256
    capsys.readouterr()
    expect_error(capsys, run_import(tmp_path / "second.h5", out), "a model named 'course' is already in",
                 "--replace")
    assert read_metadata(out / "course.json").onnx_sha256 == first
    assert run_import(tmp_path / "second.h5", out, "--replace") == 0
    assert read_metadata(out / "course.json").onnx_sha256 != first
    assert served(out).version == read_metadata(out / "course.json").version


def test_a_vocabulary_smaller_than_the_embedding(tmp_path, out, capsys):
    small = tmp_path / "small_index.json"
    small.write_text(json.dumps({f"word{rank}": rank for rank in range(1, 101)}))  # 100 words, for 296 ids
    course_model().save(tmp_path / "my_model.h5")
    expect_error(capsys, run_import(tmp_path / "my_model.h5", out, "--word-index", str(small)),
                 "has 100 of the 296 words the model reads", "smaller than the embedding", "--num-words 104")
    assert run_import(tmp_path / "my_model.h5", out, "--word-index", str(small), "--num-words", "104") == 0


def test_logits_after_a_sigmoid_are_refused(tmp_path, out, capsys):
    course_model(activation="sigmoid").save(tmp_path / "my_model.keras")
    expect_error(capsys, run_import(tmp_path / "my_model.keras", out, "--output", "logits"),
                 "ends in a sigmoid; its output is a probability, and a second sigmoid")


def test_a_last_layer_that_cannot_tell_needs_the_output_option(tmp_path, out, capsys):
    course_model(activation="tanh").save(tmp_path / "my_model.keras")
    expect_error(capsys, run_import(tmp_path / "my_model.keras", out), "say which with --output logits")
    assert run_import(tmp_path / "my_model.keras", out, "--output", "logits") == 0


@pytest.mark.parametrize("options, message", [
    (["--num-words", "500"], "--num-words 500: the embedding has 300 rows"),
    (["--max-len", "100"], "--max-len 100: the model reads 64 tokens per review"),
    (["--name", "all"], "is reserved"),
    (["--name", "../escape"], "a model name is letters, digits"),
])
def test_options_that_do_not_fit_the_model(tmp_path, out, capsys, options, message):
    course_model().save(tmp_path / "my_model.h5")
    expect_error(capsys, run_import(tmp_path / "my_model.h5", out, *options), message)


def test_the_command_prints_one_line_and_no_traceback(tmp_path):
    # The real command line, TensorFlow's own start-up lines and all: the last line is the error.
    WRONG_SHAPES["two classes"][0]().save(tmp_path / "two_classes.keras")
    result = subprocess.run([sys.executable, "-m", "training.import_model", str(tmp_path / "two_classes.keras"),
                             "--name", "x", "--out", str(tmp_path / "models"), "--word-index", str(WORD_INDEX)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: the model's output has shape (batch, 2)")
