"""Import a Keras model trained elsewhere (R's keras, tf.keras, Keras 3) and export it for the service.

    python -m training.import_model PATH --name NAME [--out models/] [--num-words N] [--max-len N]
        [--word-index FILE] [--output logits|probability] [--calibration-data FILE] [--evaluate] [--replace]

PATH is a Keras 3 ``.keras`` archive or a legacy HDF5 ``.h5`` file, the format Keras 2 writes (R's
``save_model_hdf5(model, "my_model.h5")``, tf.keras's ``model.save("my_model.h5")``); Keras 3 reads both
(``keras.models.load_model``). The model must read one review as integer token ids of one fixed length, the
Keras IMDB ids (``artifacts/tokenizer.py``: 1 starts a review, 2 is an unknown word, a word of frequency rank r is
r + 3, padding in front), and give one unit: the probability, or the logit, that the review is positive.

* ``num_words`` is the input dimension of the embedding that reads the tokens, ``max_len`` the input's length,
  unless ``--num-words`` (at most the embedding's) or ``--max-len`` (the model's own, or any for a model of
  variable length) say otherwise.
* What the output is, and what the export does with it, is said in the report and the metadata:
  a last layer that ends in a sigmoid gives the probability, served as it is. A last layer without an activation
  (the course's listing ends in ``layer_dense(units = 1)``) gives a logit, and the export adds a sigmoid, unless
  the file records that the model was trained with binary cross-entropy on its output as a probability
  (``loss = "binary_crossentropy"``, ``from_logits`` false: what the course's listing compiles): then the
  output is what the loss read as a probability, and the export clips it to [1e-7, 1 - 1e-7] as the loss did (a
  sigmoid would make every score at least 0.5). ``--output logits`` or ``--output probability`` says which it is
  (required when the last layer's activation is another one), and ``--output logits`` is refused after a
  sigmoid.
* The vocabulary is the ``num_words`` most frequent words of the word index (``--word-index``, else
  ``imdb_word_index.json`` in the data folder, ``training/data.py``); one with fewer words than the embedding
  reads is refused. It is written beside the model, or the folder's ``vocab_<num_words>.json`` is shared when it
  holds the same words.
* The export is the project's (``training.export.to_onnx``, with ``training/fold.py``'s rewrites) and must
  reproduce Keras's scores (after the added sigmoid) within 1e-5 on random token rows and, when the IMDB data is
  there, on 512 test reviews; nothing is written otherwise.
* Calibration (``training/calibrate.py``, as the pipeline calibrates) needs reviews the model never trained on:
  ``--calibration-data``, a JSON-lines file of ``{"text": ..., "label": 0 or 1}``, and the IMDB test set for its
  before/after figures; without them it is skipped, and the metadata says why. ``--evaluate`` measures the export
  on the 25,000 IMDB test reviews (the data setting, ``IMDB_DATA_DIR``); without the data it is skipped too.
* It writes ``NAME.onnx``, ``NAME.json`` (``artifacts/metadata.py``, with an ``imported`` record in place of a
  training record) and the vocabulary into ``--out``, the metadata last, each file renamed into place, so a
  service that reloads meanwhile reads the old model or the new one. A name the folder already serves is refused
  unless ``--replace``.

Every expected failure (a missing or corrupt file, another input or output shape, a name already served, a
vocabulary smaller than the embedding, a failed parity check) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artifacts.metadata import (
    MODEL_NAME_PATTERN,
    ImportRecord,
    InputSpec,
    LayerSummary,
    ModelMetadata,
    TestMetrics,
    VocabularyFile,
    write_metadata,
)
from artifacts.tokenizer import START, Tokenizer
from artifacts.vocabulary import INDEX_FROM, file_sha256, load_word_index, save_word_index, vocabulary_subset
from training.data import DataError, dataset_path, load_imdb, require_data_file, word_index_path

if TYPE_CHECKING:
    import keras

log = logging.getLogger("training")

FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
# Binary cross-entropy, as a compiled model's loss may be recorded (Keras 2 and 3, a name or a class)
BINARY_CROSSENTROPY = {"binary_crossentropy", "bce", "binarycrossentropy", "binary_focal_crossentropy",
                       "binaryfocalcrossentropy"}
PROBABILITY_EPSILON = 1e-7  # Keras's epsilon: binary cross-entropy clips a probability to [eps, 1 - eps]
RESERVED_NAMES = {"all"}  # ?model=all asks for every model
PARITY_RANDOM_ROWS = 256
PARITY_TEST_REVIEWS = 512  # as the pipeline's PARITY_REVIEWS
PROBABILITY_ACTIVATIONS = {"sigmoid", "hard_sigmoid"}
LOGIT_ACTIVATIONS = {"linear"}


class ImportFailure(Exception):
    """An expected failure: the message is the whole, one-line report."""


@dataclass(frozen=True)
class Shape:
    """What the model reads and gives, as the import serves it."""

    num_words: int
    max_len: int
    num_words_from: str  # "embedding" or "option"
    max_len_from: str  # "input" or "option"
    output: str  # "logits" or "probability": what the model's own output is
    last_layer: str  # e.g. "Dense 'dense_1' (linear)"
    treatment: str  # what the export adds: "sigmoid", "clip" (a probability from a layer without a sigmoid), "none"
    reason: str  # why, for the report

    @property
    def sigmoid_added(self) -> bool:
        return self.treatment == "sigmoid"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.import_model", description=__doc__.split("\n")[0])
    parser.add_argument("path", type=Path, metavar="PATH", help="the Keras model: a .keras or a legacy .h5 file")
    parser.add_argument("--name", required=True, help="the model's name in the service (its files: NAME.onnx, "
                                                      "NAME.json)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="the model folder (default: %(default)s)")
    parser.add_argument("--num-words", type=int, help="vocabulary size (default: the embedding's input dimension)")
    parser.add_argument("--max-len", type=int, help="tokens per review (default: the model's input length)")
    parser.add_argument("--word-index", type=Path,
                        help="Keras IMDB word index JSON (default: imdb_word_index.json in the data folder: "
                             "$IMDB_DATA_DIR, else data/ or ../shared/data)")
    parser.add_argument("--output", choices=("logits", "probability"),
                        help="what the model's output is (default: a sigmoid gives probabilities; no activation "
                             "gives logits, to which the export adds a sigmoid, unless the file says the model was "
                             "trained with binary_crossentropy on its output as a probability)")
    parser.add_argument("--calibration-data", type=Path, metavar="FILE",
                        help="JSON lines {\"text\": ..., \"label\": 0 or 1} of reviews the model never trained on, to "
                             "fit the calibration on (it also needs the IMDB test set)")
    parser.add_argument("--evaluate", action="store_true",
                        help="measure the export on the IMDB test set (when the data is there)")
    parser.add_argument("--replace", action="store_true", help="replace a model of that name in --out")
    args = parser.parse_args(argv)
    for option in ("num_words", "max_len"):
        value = getattr(args, option)
        if value is not None and value < (4 if option == "num_words" else 1):
            parser.error(f"--{option.replace('_', '-')} must be at least {4 if option == 'num_words' else 1}")
    return args


# --- the cheap checks, before TensorFlow is imported -------------------------------------------------------------


def check_name(name: str, out: Path, replace: bool) -> None:
    if not re.fullmatch(MODEL_NAME_PATTERN, name):
        raise ImportFailure(f"--name {name!r}: a model name is letters, digits, '_', '.' and '-', starting with a "
                            "letter or digit")
    if name in RESERVED_NAMES:
        raise ImportFailure(f"--name {name!r} is reserved (?model={name} asks for every model); choose another")
    if out.exists() and not out.is_dir():
        raise ImportFailure(f"--out {out} is not a folder")
    served = [path for path in (out / f"{name}.onnx", out / f"{name}.json") if path.exists()]
    if served and not replace:
        raise ImportFailure(f"a model named {name!r} is already in {out} ({served[0].name}); pass --replace to "
                            "replace it, or choose another --name")


@dataclass(frozen=True)
class ModelFile:
    kind: str  # "keras" or "h5"
    saved_by: str | None  # the Keras version that wrote it
    loss: object  # the loss it was compiled with, as recorded (None: not compiled, or not recorded)


def check_file(path: Path) -> ModelFile:
    """The file's format (``keras`` or ``h5``), the Keras version that wrote it and the loss it was compiled with,
    from a look inside it that needs no TensorFlow: a missing file, another format or an unreadable one fails
    here, in a second."""
    if not path.is_file():
        raise ImportFailure(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ImportFailure(f"{path}: expected a Keras model file, .keras (Keras 3) or .h5 (Keras 2, tf.keras, R's "
                            "save_model_hdf5); a SavedModel folder or .weights.h5 holds no whole model")
    if kind == "keras":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if "config.json" not in names:
                    raise ImportFailure(f"{path}: a zip archive without config.json, not a .keras model")
                metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                config = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ImportFailure(f"{path}: not a readable .keras archive ({error})") from None
        compiled = config.get("compile_config") if isinstance(config, dict) else None
        return ModelFile(kind, metadata.get("keras_version"), (compiled or {}).get("loss"))
    import h5py

    try:
        with h5py.File(path, "r") as file:
            if "model_config" not in file.attrs:
                raise ImportFailure(f"{path}: an HDF5 file without a model configuration (weights only?); save the "
                                    "whole model: save_model_hdf5(model, ...) in R, model.save(...) in Python")
            version, training = file.attrs.get("keras_version"), file.attrs.get("training_config")
    except OSError as error:
        raise ImportFailure(f"{path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None
    try:
        training = json.loads(training) if training is not None else {}
    except ValueError:
        training = {}
    return ModelFile(kind, version.decode() if isinstance(version, bytes) else version,
                     training.get("loss") if isinstance(training, dict) else None)


def trained_on(loss: object) -> tuple[str | None, bool | None]:
    """The recorded loss, described, and whether it took the model's output as a logit (True), as a probability
    (False: binary cross-entropy without ``from_logits``), or cannot tell (None)."""
    if isinstance(loss, dict) and loss.get("class_name") == "function" and isinstance(loss.get("config"), str):
        loss = loss["config"]  # Keras 3's record of a loss function
    if isinstance(loss, str):
        return loss, (False if loss.lower() in BINARY_CROSSENTROPY else None)
    if isinstance(loss, dict) and isinstance(loss.get("class_name"), str):
        name, config = loss["class_name"], loss.get("config") if isinstance(loss.get("config"), dict) else {}
        if name.lower() in BINARY_CROSSENTROPY:
            from_logits = bool(config.get("from_logits", False))
            return f"{name}(from_logits={from_logits})", from_logits
        return name, None
    return None, None


def read_word_index(args: argparse.Namespace) -> tuple[dict[str, int], Path]:
    path = args.word_index
    try:
        if path is None:
            path = require_data_file(word_index_path())
        return load_word_index(path), path
    except (DataError, FileNotFoundError, ValueError) as error:
        raise ImportFailure(f"word index: {error}") from None


def read_reviews(path: Path) -> tuple[list[str], np.ndarray]:
    """``--calibration-data``: JSON lines with a ``text`` and a ``label`` (0 or 1), both labels present."""
    texts, labels = [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFailure(f"--calibration-data {path}: cannot be read ({error})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            review = json.loads(line)
            text, label = review["text"], review["label"]
        except (json.JSONDecodeError, TypeError, KeyError) as error:
            raise ImportFailure(f"--calibration-data {path}, line {number}: expected a JSON object with 'text' and "
                                f"'label' ({type(error).__name__}: {error})") from None
        if not isinstance(text, str) or label not in (0, 1) or isinstance(label, bool):
            raise ImportFailure(f"--calibration-data {path}, line {number}: 'text' must be a string and 'label' 0 "
                                "or 1")
        texts.append(text)
        labels.append(label)
    if len(set(labels)) < 2:
        raise ImportFailure(f"--calibration-data {path}: needs reviews of both labels; it has {len(labels)} "
                            f"reviews of {sorted(set(labels)) or 'no'} label")
    return texts, np.asarray(labels)


# --- the model ---------------------------------------------------------------------------------------------------


def load_keras(path: Path) -> keras.Model:
    import keras

    try:
        with warnings.catch_warnings():  # Keras 2 configs: "Argument `input_length` is deprecated", and the like
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for files it cannot read
        message = " ".join(str(error).split()) or type(error).__name__
        raise ImportFailure(f"{path}: Keras {keras.__version__} cannot load the model ({message[:300]})") from None
    try:
        model.inputs  # noqa: B018 (an unbuilt Sequential has none)
    except AttributeError:
        raise ImportFailure(f"{path}: the model was saved before it was built: it has no input shape and no "
                            "weights") from None
    return model


def _producer(tensor):
    """The layer (or nested model) whose output ``tensor`` is."""
    operation = tensor._keras_history.operation
    while hasattr(operation, "outputs") and hasattr(operation, "layers"):  # a nested model: its own last layer
        operation = operation.outputs[0]._keras_history.operation
    return operation


def _consumers(model: keras.Model, tensor) -> list:
    """The layers that read ``tensor`` directly."""
    found = []
    for layer in model.layers:
        for node in getattr(layer, "_inbound_nodes", []):
            if any(t is tensor for t in node.input_tensors) and layer not in found:
                found.append(layer)
    return found


def inspect(model: keras.Model, args: argparse.Namespace, loss: object = None) -> Shape:
    """The checks of the model's input and output, and what num_words, max_len and the output are."""
    import keras

    if len(model.inputs) != 1:
        raise ImportFailure(f"the model has {len(model.inputs)} inputs; the service gives it one: token ids of "
                            "shape (batch, length)")
    tokens = model.inputs[0]
    shape = tuple(tokens.shape)
    if len(shape) != 2:
        raise ImportFailure(f"the model's input has shape {_shape(shape)}; expected (batch, length) token ids, one "
                            "review per row")
    embeddings = [layer for layer in _consumers(model, tokens) if isinstance(layer, keras.layers.Embedding)]
    if "int" not in str(tokens.dtype) and not embeddings:
        raise ImportFailure(f"the model's input is {tokens.dtype} {_shape(shape)} and goes into no Embedding layer: "
                            "not integer token ids")
    length = shape[1]
    if length is None and args.max_len is None:
        raise ImportFailure("the model reads reviews of any length: give the length the service pads them to with "
                            "--max-len")
    if length is not None and args.max_len is not None and args.max_len != length:
        raise ImportFailure(f"--max-len {args.max_len}: the model reads {length} tokens per review")
    max_len, max_len_from = (length, "input") if length is not None else (args.max_len, "option")

    embedding_rows = embeddings[0].input_dim if len(embeddings) == 1 else None
    if args.num_words is not None:
        if embedding_rows is not None and args.num_words > embedding_rows:
            raise ImportFailure(f"--num-words {args.num_words}: the embedding has {embedding_rows} rows; ids from "
                                f"{embedding_rows} on would be out of its range")
        num_words, num_words_from = args.num_words, "option"
    elif embedding_rows is None:
        raise ImportFailure(f"the model's input goes into {len(embeddings)} Embedding layers: give the vocabulary "
                            "size with --num-words")
    else:
        num_words, num_words_from = embedding_rows, "embedding"
    if num_words <= INDEX_FROM:
        raise ImportFailure(f"a vocabulary of {num_words} ids has no word (ids 0 to 3 are padding, start, unknown, "
                            "unused)")

    if len(model.outputs) != 1:
        raise ImportFailure(f"the model has {len(model.outputs)} outputs; expected one, of shape (batch, 1)")
    output_shape = tuple(model.outputs[0].shape)
    if len(output_shape) != 2 or output_shape[1] != 1:
        raise ImportFailure(f"the model's output has shape {_shape(output_shape)}; expected (batch, 1): one unit, "
                            "the probability (or the logit) that the review is positive")
    return Shape(num_words, max_len, num_words_from, max_len_from, *_output_kind(model, args.output, loss))


def _output_kind(model: keras.Model, stated: str | None, loss: object) -> tuple[str, str, str, str]:
    """What the output is, the last layer described, what the export adds to it and why."""
    last = _producer(model.outputs[0])
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", None) if activation is not None else None
    described = f"{type(last).__name__} {last.name!r}" + (f" ({name})" if name else "")
    loss_name, from_logits = trained_on(loss)
    trained = f"trained with {loss_name}" if loss_name else "no training loss recorded"
    if name in PROBABILITY_ACTIVATIONS:
        if stated == "logits":
            raise ImportFailure(f"--output logits: the last layer, {described}, ends in a sigmoid; its output is a "
                                "probability, and a second sigmoid would label every review positive")
        return "probability", described, "none", "it ends in a sigmoid: its output is the probability"
    if name not in LOGIT_ACTIVATIONS and stated is None:
        raise ImportFailure(f"the last layer, {described}, does not tell whether the output is a logit or a "
                            "probability: say which with --output logits or --output probability")
    clipped = (f"the export clips it to [{PROBABILITY_EPSILON:g}, 1 - {PROBABILITY_EPSILON:g}], as binary "
               "cross-entropy reads a probability")
    if stated == "probability":
        return "probability", described, "clip", f"--output probability: {clipped}"
    if stated == "logits":
        return "logits", described, "sigmoid", "--output logits: the export adds a sigmoid"
    if from_logits is False:
        return "probability", described, "clip", (
            f"it has no sigmoid, and was {trained} on its output as a probability (as the course's listing compiles "
            f"it): {clipped} (--output logits would add a sigmoid instead)")
    return "logits", described, "sigmoid", (
        f"it has no sigmoid ({trained}): its output is a logit, and the export adds a sigmoid (--output probability "
        "if it was trained on its raw output as a probability)")


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("batch" if i == 0 and d is None else "any" if d is None else str(d)
                           for i, d in enumerate(shape)) + ")"


def served_model(model: keras.Model, treatment: str) -> keras.Model:
    """The model the export is made from: the model, with a sigmoid after it when its output is a logit, or
    its output clipped to a probability when it has no sigmoid of its own."""
    import keras

    if treatment == "none":
        return model
    if treatment == "sigmoid":
        added = keras.layers.Activation("sigmoid", name="added_sigmoid")
    else:
        added = keras.layers.Lambda(lambda x: keras.ops.clip(x, PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON),
                                    name="added_clip")
    return keras.Sequential([model, added], name="imported")


def describe(model: keras.Model, treatment: str) -> list[LayerSummary]:
    layers = []
    try:
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            layers.append(LayerSummary(name=layer.name, type=type(layer).__name__,
                                       output_shape=list(layer.output.shape), params=layer.count_params()))
    except (AttributeError, ValueError):  # a layer called more than once has no single output shape
        return []
    if treatment != "none":
        layers.append(LayerSummary(name=f"added_{'sigmoid' if treatment == 'sigmoid' else 'clip'}",
                                   type="Activation" if treatment == "sigmoid" else "Lambda", output_shape=[None, 1],
                                   params=0))
    return layers


def parity_tokens(num_words: int, max_len: int, seed: int = 0) -> np.ndarray:
    """Random token rows shaped like reviews: padding in front, the start token, then word ids; every length
    from a single word to the whole row."""
    rng = np.random.default_rng(seed)
    tokens = np.zeros((PARITY_RANDOM_ROWS, max_len), np.int32)
    lengths = np.linspace(1, max_len, PARITY_RANDOM_ROWS).astype(int)
    for row, length in zip(tokens, lengths, strict=True):
        row[max_len - length:] = rng.integers(INDEX_FROM - 1, num_words, length)  # 2 (unknown) and the words
        row[max_len - length] = START
    return tokens


# --- the vocabulary ----------------------------------------------------------------------------------------------


def vocabulary(word_index: dict[str, int], num_words: int, source: Path) -> dict[str, int]:
    """The words the model reads; ImportFailure when the word index has fewer than its embedding reads."""
    subset = vocabulary_subset(word_index, num_words)
    needed = num_words - INDEX_FROM - 1  # ranks 1 to num_words - 4: ids 4 to num_words - 1
    ranks = set(subset.values())
    if len(ranks) < needed:
        contiguous = next(rank for rank in range(1, needed + 1) if rank not in ranks) - 1
        hint = f", or --num-words {contiguous + 4} to read only its first {contiguous:,}" if contiguous else ""
        raise ImportFailure(f"the word index {source} has {len(ranks):,} of the {needed:,} words the model reads "
                            f"(ranks 1 to {needed:,}: ids 4 to {num_words - 1:,}), a vocabulary smaller than the "
                            f"embedding; give --word-index with them{hint}")
    return subset


def write_vocabulary(subset: dict[str, int], num_words: int, name: str, out: Path) -> VocabularyFile:
    """The folder's ``vocab_<num_words>.json`` when it holds these very words (models that share it share a
    tokenizer in the service), else ``vocab_<name>.json``."""
    temporary = out / f".{name}.vocabulary.tmp"
    sha256 = save_word_index(subset, temporary)
    shared = out / f"vocab_{num_words}.json"
    if shared.is_file() and file_sha256(shared) == sha256:
        temporary.unlink()
        return VocabularyFile(file=shared.name, sha256=sha256)
    own = out / f"vocab_{name}.json"
    temporary.replace(own)
    return VocabularyFile(file=own.name, sha256=sha256)


# --- data --------------------------------------------------------------------------------------------------------


def imdb_test_set(needed_for: str) -> tuple[list[str], np.ndarray] | str:
    """The IMDB test reviews and labels, or why they are not there."""
    try:
        dataset = load_imdb(require_data_file(dataset_path()))
    except DataError as error:
        return f"{needed_for} skipped: {error}"
    return dataset["test"].texts, np.asarray(dataset["test"].labels)


# --- the command -------------------------------------------------------------------------------------------------


def import_model(args: argparse.Namespace) -> list[str]:
    """Every step; the lines of the report. ImportFailure for what the user can fix."""
    check_name(args.name, args.out, args.replace)
    file = check_file(args.path)
    word_index, word_index_file = read_word_index(args)
    calibration_reviews = read_reviews(args.calibration_data) if args.calibration_data is not None else None
    report = []

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training import calibrate, evaluate, export
    from training.pipeline import library_versions

    model = load_keras(args.path)
    shape = inspect(model, args, file.loss)
    subset = vocabulary(word_index, shape.num_words, word_index_file)
    tokenizer = Tokenizer(subset, shape.num_words, shape.max_len)
    length_from = "its input" if shape.max_len_from == "input" else "--max-len"
    words_from = "its embedding" if shape.num_words_from == "embedding" else "--num-words"
    report.append(f"{args.path}: {file.kind} file written by Keras {file.saved_by or '(version not recorded)'}; reads "
                  f"{shape.max_len} tokens (from {length_from}) of {shape.num_words:,} ids (from {words_from})")
    report.append(f"its last layer, {shape.last_layer}: {shape.reason}")

    test = None
    if args.evaluate or calibration_reviews is not None:
        test = imdb_test_set("evaluation" if args.evaluate else "calibration")
        if isinstance(test, str):
            report.append(test)
            test = None
    x_test = tokenizer.encode_batch(test[0]) if test is not None else None

    served = served_model(model, shape.treatment)
    tokens = parity_tokens(shape.num_words, shape.max_len)
    if x_test is not None:
        tokens = np.concatenate([tokens, x_test[:PARITY_TEST_REVIEWS]])
    keras_scores = served.predict(tokens, batch_size=256, verbose=0).reshape(-1)
    onnx_bytes = export.to_onnx(served, shape.max_len)
    try:
        parity = export.check_parity(onnx_bytes, keras_scores, tokens)
    except export.ParityError as error:
        raise ImportFailure(str(error)) from None
    report.append(f"ONNX export: scores within {parity:.1e} of Keras's on {len(tokens)} token rows")

    args.out.mkdir(parents=True, exist_ok=True)
    calibration, metrics, calibration_skipped = None, None, None
    if shape.treatment == "clip":
        calibration_skipped = ("the score is the model's own output, clipped: calibration maps a logit before a "
                               "final sigmoid, and this export has none")
    elif calibration_reviews is None:
        calibration_skipped = ("no held-out reviews: --calibration-data names reviews the model never trained on "
                               "(the IMDB training reviews it was fitted on would make it overconfident)")
    elif x_test is None:
        calibration_skipped = "the IMDB test set, on which calibration is checked and measured, is not there"
    else:
        try:
            result = calibrate.calibrate_export(
                args.name, onnx_bytes, tokenizer.encode_batch(calibration_reviews[0]), calibration_reviews[1],
                f"{args.calibration_data.name}, {len(calibration_reviews[1]):,} reviews", x_test, test[1], args.out,
                allow_signed=True)
        except calibrate.CalibrationError as error:
            raise ImportFailure(f"calibration: {error}") from None
        onnx_bytes, calibration = result.onnx_bytes, result.calibration
        metrics = evaluate.test_metrics(test[1], result.test_scores)
        report.append(f"calibrated ({calibrate.describe(result.temperature)}) on {args.calibration_data.name}: test "
                      f"ECE {calibration.before.ece:.4f} -> {calibration.after.ece:.4f}")
    if calibration_skipped is not None:
        report.append(f"calibration skipped: {calibration_skipped}")

    evaluation_skipped = None
    if metrics is None and x_test is not None:
        metrics = evaluate.test_metrics(test[1], export.onnx_scores(onnx_bytes, x_test))
    if metrics is not None:
        report.append(f"IMDB test set ({metrics.reviews:,} reviews): accuracy {metrics.accuracy:.4f}, ROC AUC "
                      f"{metrics.roc_auc:.4f}, loss {metrics.loss:.4f}")
    else:
        evaluation_skipped = ("not asked for (--evaluate)" if not args.evaluate
                              else "the IMDB test set is not there (the data setting, training/data.py)")
        if args.evaluate:
            report.append(f"evaluation skipped: {evaluation_skipped}")

    written = write_files(args, model, shape, onnx_bytes, subset, metrics, calibration, file, word_index_file,
                          parity, len(tokens), calibration_skipped, evaluation_skipped, library_versions())
    report.append(f"wrote {', '.join(str(path) for path in written)}")
    report.append("a running service serves it after a reload: curl -X POST http://127.0.0.1:8000/admin/reload "
                  "(with -H 'X-API-Key: ...' when keys are set), or kill -HUP <pid of python -m service>")
    return report


def write_files(args: argparse.Namespace, model: keras.Model, shape: Shape, onnx_bytes: bytes,
                subset: dict[str, int], metrics: TestMetrics | None, calibration, file: ModelFile,
                word_index_file: Path, parity: float, parity_rows: int, calibration_skipped: str | None,
                evaluation_skipped: str | None, versions: dict[str, str]) -> list[Path]:
    """The vocabulary, the ONNX file, then the metadata, each renamed into place: a reload in between sees the
    old model, the new one, or a mismatch it refuses (the checksums), never half a file."""
    from training import export

    onnx_path, metadata_path = args.out / f"{args.name}.onnx", args.out / f"{args.name}.json"
    try:  # a replaced model's own vocabulary file, which the new one may no longer need
        previous = json.loads(metadata_path.read_text(encoding="utf-8"))["vocabulary"]["file"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    vocabulary_file = write_vocabulary(subset, shape.num_words, args.name, args.out)
    temporary = args.out / f".{args.name}.onnx.tmp"
    temporary.write_bytes(onnx_bytes)
    temporary.replace(onnx_path)
    metadata = ModelMetadata(
        name=args.name, max_len=shape.max_len, num_words=shape.num_words, tokenizer="keras",
        vocabulary=vocabulary_file, onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        input=InputSpec(name=export.INPUT_NAME, shape=[None, shape.max_len]),
        architecture=describe(model, shape.treatment), parameters=int(model.count_params()),
        onnx_bytes=len(onnx_bytes), onnx_opset=export.OPSET, parity_max_abs_diff=parity, test_metrics=metrics,
        calibration=calibration,
        imported=ImportRecord(
            source=args.path.name, source_sha256=file_sha256(args.path), format=file.kind,
            saved_by_keras=file.saved_by, trained_with=trained_on(file.loss)[0], output=shape.output,
            sigmoid_added=shape.sigmoid_added, clipped=shape.treatment == "clip", num_words_from=shape.num_words_from,
            max_len_from=shape.max_len_from, word_index=word_index_file.name,
            word_index_sha256=file_sha256(word_index_file), parity_reviews=parity_rows,
            calibration_skipped=calibration_skipped, evaluation_skipped=evaluation_skipped),
        library_versions=versions, created=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )
    temporary = args.out / f".{args.name}.json.tmp"
    write_metadata(metadata, temporary)
    temporary.replace(metadata_path)
    if previous == f"vocab_{args.name}.json" != vocabulary_file.file:
        (args.out / previous).unlink(missing_ok=True)
    return [onnx_path, metadata_path, args.out / vocabulary_file.file]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        report = import_model(args)
    except ImportFailure as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"imported {args.name}:")
    for line in report:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
