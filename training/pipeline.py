"""Train, evaluate and export the IMDB sentiment models.

    python -m training --data ../shared/data/aclImdb_v1_labeled.tar.gz --out models/
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from training import presets
from training.data import OFFICIAL_URL, DataError, download, load_imdb
from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import file_sha256, load_word_index, save_word_index, vocabulary_subset

VALIDATION_SPLIT = 0.2
SAMPLE_SEED = 1337  # which reviews --limit keeps
PARITY_REVIEWS = 512
DEFAULT_DATA = Path("../shared/data/aclImdb_v1_labeled.tar.gz")
DEFAULT_WORD_INDEX = Path("../shared/data/imdb_word_index.json")
DEFAULT_DOWNLOAD_CACHE = Path("data/aclImdb_v1.tar.gz")

log = logging.getLogger("training")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="aclImdb_v1 .tar.gz or extracted aclImdb/ folder (default: %(default)s)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the archive from --download-url into --data when it is missing")
    parser.add_argument("--download-url", default=OFFICIAL_URL, help="(default: %(default)s)")
    parser.add_argument("--word-index", type=Path, default=DEFAULT_WORD_INDEX,
                        help="Keras IMDB word index JSON (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=list(presets.PRESETS), default=list(presets.COURSE),
                        help="presets to train, from training/presets.py (default: the course models)")
    parser.add_argument("--report-only", action="store_true",
                        help="only rewrite REPORT.md from the metadata already in --out")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only N reviews of each split, balanced, for smoke runs (default: all)")
    overrides = parser.add_argument_group("overrides of the presets' values (default: the preset's own)")
    overrides.add_argument("--epochs", type=int)
    overrides.add_argument("--batch-size", type=int)
    overrides.add_argument("--max-len", type=int, help="tokens per review")
    overrides.add_argument("--num-words", type=int, help="vocabulary size")
    overrides.add_argument("--seeds", type=int, nargs="+",
                           help="train once per seed and keep the run with the best validation accuracy")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity: 0 silent, 1 progress bars, 2 one line per epoch")
    args = parser.parse_args(argv)
    if args.download and args.data == DEFAULT_DATA and not DEFAULT_DATA.exists():
        args.data = DEFAULT_DOWNLOAD_CACHE
    return args


def fetch_data(args: argparse.Namespace) -> Path:
    """The dataset path, downloading the archive first when --download asks for it."""
    if args.download:
        return download(args.download_url, args.data)
    return args.data


def balanced_sample(texts: list[str], labels: list[int], limit: int | None, seed: int):
    labels_array = np.asarray(labels)
    if limit is None or limit >= len(labels_array):
        return texts, labels_array
    rng = np.random.default_rng(seed)
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(labels_array == label), size=count, replace=False)
        for label, count in ((0, limit // 2), (1, limit - limit // 2))
    ])
    chosen.sort()
    return [texts[i] for i in chosen], labels_array[chosen]


def configured(name: str, args: argparse.Namespace) -> presets.TrainingConfig:
    """The preset with the command line's overrides applied."""
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "max_len": args.max_len,
                 "num_words": args.num_words, "seeds": tuple(args.seeds) if args.seeds else None}
    return replace(presets.get(name), **{key: value for key, value in overrides.items() if value is not None})


def seeded_model(keras, models, name: str, config: presets.TrainingConfig, seed: int, reviews: int) -> tuple:
    """A compiled model and an order for the training reviews, both fixed by ``seed``."""
    keras.utils.set_random_seed(seed)
    # The archive is ordered by label and Keras takes the validation split from the end: shuffle first.
    order = np.random.default_rng(seed).permutation(reviews)
    model = models.build(name, config)
    models.compile_for_training(model, config)
    return model, order


def train_once(keras, models, name: str, config: presets.TrainingConfig, seed: int, x_train: np.ndarray,
               y_train: np.ndarray, verbose: int) -> dict:
    """One seeded training run."""
    model, order = seeded_model(keras, models, name, config, seed, len(x_train))
    model.summary(print_fn=log.info)
    best = models.BestEpochWeights()
    callbacks = [best]
    if config.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience))
    started = time.perf_counter()
    history = model.fit(x_train[order], y_train[order], epochs=config.epochs, batch_size=config.batch_size,
                        validation_split=VALIDATION_SPLIT, callbacks=callbacks, verbose=verbose)
    seconds = round(time.perf_counter() - started, 1)
    history = {key: [float(value) for value in values] for key, values in history.history.items()}
    for epoch in range(len(history["loss"])):
        log.info("%s seed %d epoch %d: %s", name, seed, epoch + 1,
                 ", ".join(f"{key}={values[epoch]:.4f}" for key, values in history.items()))
    return {"seed": seed, "model": model, "history": history, "seconds": seconds,
            "epochs_run": len(history["loss"]), "best_epoch": best.best_epoch,
            "best_val_accuracy": float(best.best_value)}


def refit(keras, models, name: str, config: presets.TrainingConfig, seed: int, epochs: int, x_train: np.ndarray,
          y_train: np.ndarray, verbose: int) -> tuple:
    """The chosen configuration trained again on every training review for ``epochs`` epochs; no
    validation split is left, so the epoch count comes from the validation run."""
    model, order = seeded_model(keras, models, name, config, seed, len(x_train))
    started = time.perf_counter()
    model.fit(x_train[order], y_train[order], epochs=epochs, batch_size=config.batch_size, verbose=verbose)
    return model, round(time.perf_counter() - started, 1)


def library_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import sklearn
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def write_report(out: Path) -> None:
    """REPORT.md for every model in the folder, not only the ones this run trained."""
    from training import evaluate

    everything = [json.loads(path.with_suffix(".json").read_text()) for path in sorted(out.glob("*.onnx"))
                  if path.with_suffix(".json").exists()]
    experiments_file = out / "experiments.json"
    experiments = json.loads(experiments_file.read_text()) if experiments_file.exists() else None
    evaluate.write_report(everything, out / "REPORT.md", experiments)
    log.info("report written to %s", out / "REPORT.md")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.report_only:
        write_report(args.out)
        return 0
    try:
        dataset = load_imdb(fetch_data(args))
        word_index = load_word_index(args.word_index)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # TensorFlow is imported only after the cheap checks, so a bad path fails in a second.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training import evaluate, export, models

    train_texts, train_labels = balanced_sample(dataset["train"].texts, dataset["train"].labels, args.limit,
                                                SAMPLE_SEED)
    test_texts, test_labels = balanced_sample(dataset["test"].texts, dataset["test"].labels, args.limit, SAMPLE_SEED)
    y_train = train_labels.astype("float32")
    log.info("data: %d training and %d test reviews from %s", len(train_texts), len(test_texts), args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = library_versions()

    for name in args.models:
        config = configured(name, args)
        tokenizer = Tokenizer(word_index, config.num_words, config.max_len)
        x_train, x_test = tokenizer.encode_batch(train_texts), tokenizer.encode_batch(test_texts)
        vocabulary_file = f"vocab_{config.num_words}.json"
        vocabulary_sha256 = save_word_index(vocabulary_subset(word_index, config.num_words),
                                            args.out / vocabulary_file)

        # One run per seed; the run with the best validation accuracy is kept. Only that one meets the test set.
        candidates = [train_once(keras, models, name, config, seed, x_train, y_train, args.verbose)
                      for seed in config.seeds]
        chosen = max(candidates, key=lambda run: run["best_val_accuracy"])
        model, history, seconds = chosen["model"], chosen["history"], chosen["seconds"]
        log.info("%s: kept seed %d (validation accuracy %.4f) of %s", name, chosen["seed"],
                 chosen["best_val_accuracy"], [(run["seed"], round(run["best_val_accuracy"], 4)) for run in candidates])
        refitted = None
        if config.refit_on_all_training_reviews:
            if chosen["best_epoch"] < 1:
                raise RuntimeError(f"{name}: no epoch improved the validation accuracy; nothing to refit")
            model, refit_seconds = refit(keras, models, name, config, chosen["seed"], chosen["best_epoch"], x_train,
                                         y_train, args.verbose)
            refitted = {"epochs": chosen["best_epoch"], "train_reviews": len(x_train), "seconds": refit_seconds}
            log.info("%s: refitted on all %d training reviews for %d epochs", name, len(x_train), chosen["best_epoch"])

        test_scores = model.predict(x_test, batch_size=512, verbose=0).reshape(-1)
        metrics = evaluate.test_metrics(test_labels, test_scores)
        log.info("%s test: accuracy=%.4f loss=%.4f roc_auc=%.4f f1=%.4f", name,
                 metrics["accuracy"], metrics["loss"], metrics["roc_auc"], metrics["f1"])

        onnx_bytes = export.to_onnx(model, config.max_len)
        parity = export.check_parity(onnx_bytes, test_scores[:PARITY_REVIEWS], x_test[:PARITY_REVIEWS])
        log.info("%s ONNX parity on %d test reviews: max |difference| = %.2e",
                 name, min(PARITY_REVIEWS, len(x_test)), parity)

        keras_dir = args.out / "keras"
        keras_dir.mkdir(exist_ok=True)
        # From an uncompiled copy: the weights alone, without the optimizer's state (3x the size with Adam).
        weights_only = models.build(name, config)
        weights_only.set_weights(model.get_weights())
        weights_only.save_weights(keras_dir / f"{name}.weights.h5")
        onnx_path = args.out / f"{name}.onnx"
        onnx_path.write_bytes(onnx_bytes)
        metadata = {
            "name": name,
            "architecture": models.describe(model),
            "parameters": int(model.count_params()),
            "max_len": config.max_len,
            "num_words": config.num_words,
            "input": {"name": export.INPUT_NAME, "dtype": "int32", "shape": [None, config.max_len]},
            "output": {"shape": [None, 1], "meaning": "probability that the review is positive"},
            "vocabulary": {"file": vocabulary_file, "sha256": vocabulary_sha256},
            "onnx_sha256": file_sha256(onnx_path),
            "onnx_bytes": onnx_path.stat().st_size,
            "onnx_opset": export.OPSET,
            "parity_max_abs_diff": parity,
            "test_metrics": metrics,
            "config": config.to_dict(),
            "training": {
                "optimizer": config.optimizer, "learning_rate": config.learning_rate, "loss": "binary_crossentropy",
                "epochs": config.epochs, "batch_size": config.batch_size, "validation_split": VALIDATION_SPLIT,
                "seed": chosen["seed"], "train_reviews": len(x_train), "test_reviews": len(x_test),
                "epochs_run": chosen["epochs_run"], "best_epoch": chosen["best_epoch"],
                "best_val_accuracy": chosen["best_val_accuracy"], "seconds": seconds, "data": str(args.data),
                "seed_candidates": [{key: run[key] for key in ("seed", "best_epoch", "best_val_accuracy", "seconds")}
                                    for run in candidates],
                "refit_on_all_training_reviews": refitted,
            },
            "library_versions": versions,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (args.out / f"{name}.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        (args.out / f"{name}_history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
        evaluate.plot_history(history, f"{name}: training and validation", args.out / f"{name}_history.png")
        log.info("%s written to %s (%.0f s of training)", name, onnx_path, seconds)

    write_report(args.out)
    return 0

