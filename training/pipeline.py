"""Train, evaluate and export the IMDB sentiment models.

    python -m training [--models conv1d conv_lstm] [--out models/]

The dataset and the Keras word index come from the data setting (``IMDB_DATA_DIR``, else ``data/``, else
``../shared/data``; see ``training/data.py``); ``--data`` and ``--word-index`` name other files. Then, for
each model: tokenize -> train once per seed -> keep the run with the best validation accuracy -> refit on
the training reviews (presets that ask; a tenth is held out for calibration) -> evaluate on the test set ->
export to ONNX and check parity -> calibrate: fit a sign-keeping map of the logit (one temperature, a signed
temperature or a signed power, chosen out of fold) on the held-out reviews and apply it inside the graph
(``training/calibrate.py``; ``--no-calibration`` skips it) -> measure robustness (counterfactual dev pairs,
checklist, snippets; ``training/robustness.py``) -> write the files; and last the report. Counterfactual presets
train on the IMDB reviews less the pairs' originals, plus the pairs and the reviews made from their edits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from artifacts.metadata import (
    Calibration,
    Counterfactual,
    InputSpec,
    LayerSummary,
    MetadataError,
    ModelMetadata,
    Refit,
    Robustness,
    SeedCandidate,
    ShortTexts,
    TestMetrics,
    TrainingRecord,
    VocabularyFile,
    read_metadata,
    write_metadata,
)
from artifacts.tokenizer import FOCUS_RULES, Tokenizer, text_to_words
from artifacts.vocabulary import file_sha256, load_word_index, save_word_index, vocabulary_subset
from training import presets, robustness
from training.cad import CadSet, Review, counterfactual_folder, flipped, load_cad, substitutions
from training.crops import contrast_joins, edited_sentences, sentence_crops
from training.data import (
    MD5,
    OFFICIAL_ARCHIVE,
    OFFICIAL_URL,
    WORD_INDEX_FILE,
    WORD_INDEX_URL,
    DataError,
    data_dir,
    dataset_path,
    download,
    load_imdb,
    require_data_file,
    word_index_path,
)

# This module imports no TensorFlow, so a bad path fails in a second: the steps that need Keras, TensorFlow,
# tf2onnx or matplotlib (training.fit, .export, .models, .evaluate) import them in their bodies.
if TYPE_CHECKING:
    import keras

    from training import fit
    from training.fit import Run

SAMPLE_SEED = 1337  # which reviews --limit keeps
PREDICT_BATCH_SIZE = 512
PARITY_REVIEWS = 512  # test reviews on which onnxruntime must reproduce Keras
LOSS = "binary_crossentropy"
# A refit (presets with refit_on_all_training_reviews) keeps the last tenth of its seed's shuffle out of training,
# to fit the temperature on: calibration needs reviews the shipped weights never saw.
REFIT_CALIBRATION_SPLIT = 0.1

log = logging.getLogger("training")


@dataclass
class Reviews:
    """The reviews a run trains and tests on: all of them, or ``--limit`` of each split, balanced."""

    train_texts: list[str]
    y_train: np.ndarray  # float32 labels, as Keras trains on them
    test_texts: list[str]
    test_labels: np.ndarray  # int labels


@dataclass
class TrainingSet:
    """What one model trains on: IMDB training reviews (validated on, and held out from, as the seed's shuffle
    says) and texts it only ever fits on (counterfactual pairs, ``counterfactual_copies`` times, the sentences their
    editors changed, reviews made from the IMDB ones and sentence crops of them); ``extra_sources`` says which IMDB
    review each extra one was made from (-1: none), so that a text made from a held-out review is held out with it."""

    texts: list[str]
    labels: np.ndarray  # float32
    extra_texts: list[str]
    extra_labels: np.ndarray  # float32
    extra_sources: np.ndarray  # int64, index into texts or -1
    counterfactual: Counterfactual | None


def training_set(reviews: Reviews, config: presets.TrainingConfig, cad: dict[str, CadSet] | None) -> TrainingSet:
    """The preset's training reviews. With counterfactual copies, the pairs' originals leave the IMDB part: the
    dev ones are never trained on (the dev pairs then measure unseen reviews) and the training ones come back
    with their edited copies (and, with ``counterfactual_sentences``, the sentences their editors changed; with
    ``contrast_joins``, two of those sentences joined by a contrast), on the fitting side only, so no review is both
    fitted and validated on. Sentence crops of the IMDB part (``training/crops.py``) join the fitting side too."""
    texts, labels = reviews.train_texts, reviews.y_train
    extra: list[tuple[Review, int]] = []
    record = None
    if config.counterfactual_copies:
        if cad is None:
            raise DataError(f"the preset trains on counterfactual pairs, and there is no {robustness.CAD_HINT}")
        originals = {tuple(text_to_words(pair.original.text)) for split in cad.values() for pair in split.pairs}
        kept = [i for i, text in enumerate(texts) if tuple(text_to_words(text)) not in originals]
        texts, labels = [texts[i] for i in kept], labels[kept]
        pairs = cad["train"].pairs
        copies = config.counterfactual_copies
        extra = [(review, -1) for pair in pairs for review in (pair.original, pair.edited)] * copies
        if config.made_counterfactuals:
            lexicon = substitutions(pairs)
            reviews_made_from = [(Review(text, int(label)), i)
                                 for i, (text, label) in enumerate(zip(texts, labels, strict=True))]
            alternate = 2 if config.made_negations == "alternate" else 0
            focus = config.tokenizer in FOCUS_RULES  # an inserted "not" negates what the model will read it negate
            made = [(flipped(review, lexicon, config.made_min_share, negate_every=alternate, focus=focus), i)
                    for review, i in reviews_made_from]
            if config.made_negations in ("copies", "complaint_copies"):  # and beside them, negated copies
                made += [(flipped(review, lexicon, config.made_min_share, negate_every=1, focus=focus), i)
                         for review, i in reviews_made_from
                         if config.made_negations == "copies" or review.label == 0]
            extra += [(review, i) for review, i in made if review is not None]
        made_reviews = sum(source >= 0 for _, source in extra) if config.made_counterfactuals else None
        changed = edited_sentences(pairs) if config.counterfactual_sentences or config.contrast_joins else None
        if changed is not None and config.counterfactual_sentences:
            extra += [(review, -1) for review in changed] * config.counterfactual_sentences
            log.info("%d sentences the editors changed, %d times each", len(changed), config.counterfactual_sentences)
        joins = contrast_joins(changed, config.contrast_joins) if config.contrast_joins else None
        if joins is not None:
            extra += [(review, -1) for review in joins]
            log.info("%d texts joining two of the %d sentences the editors changed by a contrast", len(joins),
                     len(changed))
        record = Counterfactual(copies=config.counterfactual_copies, train_pairs=len(pairs),
                                left_out_originals=len(reviews.train_texts) - len(kept),
                                skipped_pairs=cad["train"].skipped, made_reviews=made_reviews,
                                edited_sentences=len(changed) if config.counterfactual_sentences else None,
                                contrast_joins=None if joins is None else len(joins))
    if config.sentence_crops:
        crop_texts, crop_labels, crop_sources = sentence_crops(texts, labels, config.sentence_crops)
        extra += [(Review(text, int(label)), int(source))
                  for text, label, source in zip(crop_texts, crop_labels, crop_sources, strict=True)]
        log.info("%d sentence crops of %d training reviews", len(crop_texts), len(set(crop_sources.tolist())))
    return TrainingSet(texts, labels, [review.text for review, _ in extra],
                       np.array([review.label for review, _ in extra], np.float32),
                       np.array([source for _, source in extra], np.int64), record)


def load_counterfactual(dataset: dict, data: Path) -> dict[str, CadSet] | None:
    """Both splits of the counterfactual pairs in the folder of the dataset ``data`` (its ``cad/``), or None (with
    a warning) when it has none."""
    folder = counterfactual_folder(data)
    try:
        return {split: load_cad(split, dataset["train"].texts, folder) for split in ("train", "dev")}
    except DataError as error:
        log.warning("%s: the robustness figures and counterfactual presets need it", error)
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path,
                        help="aclImdb_v1 .tar.gz or extracted aclImdb/ folder (default: the dataset archive in "
                             "$IMDB_DATA_DIR, else in data/ or ../shared/data)")
    parser.add_argument("--download", action="store_true",
                        help="fetch the archive from --download-url (and the Keras word index) when missing")
    parser.add_argument("--download-url", default=OFFICIAL_URL, help="(default: %(default)s)")
    parser.add_argument("--word-index", type=Path,
                        help="Keras IMDB word index JSON (default: imdb_word_index.json beside the dataset archive "
                             "the data setting finds)")
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
    parser.add_argument("--no-calibration", dest="calibrate", action="store_false",
                        help="export the raw sigmoid, without fitting a temperature (refits then use every "
                             "training review)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="Keras fit verbosity: 0 silent, 1 progress bars, 2 one line per epoch")
    args = parser.parse_args(argv)
    # Paths the data setting chose are checked by read_inputs; the ones given on the command line by their readers.
    args.data_from_setting, args.word_index_from_setting = args.data is None, args.word_index is None
    if args.data is None:
        found = dataset_path()
        args.data = data_dir() / OFFICIAL_ARCHIVE if args.download and not found.exists() else found
    if args.word_index is None:
        args.word_index = word_index_path()
    return args


def fetch_data(args: argparse.Namespace) -> Path:
    """The dataset path, downloading the archive (and a missing word index) first when --download asks for it.
    Downloads from the official addresses are checked against their published md5."""
    if args.download:
        download(args.download_url, args.data, md5=MD5[OFFICIAL_ARCHIVE] if args.download_url == OFFICIAL_URL else None)
        if args.word_index_from_setting and not args.word_index.exists():
            download(WORD_INDEX_URL, args.word_index, md5=MD5[WORD_INDEX_FILE])
    return args.data


def read_inputs(args: argparse.Namespace) -> tuple[dict, dict[str, int]]:
    """The dataset's two splits and the Keras word index: the cheap checks, before TensorFlow is imported."""
    data = fetch_data(args)
    if args.data_from_setting:
        require_data_file(data)
    if args.word_index_from_setting:
        require_data_file(args.word_index)
    return load_imdb(data), load_word_index(args.word_index)


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


def sample_reviews(dataset: dict, limit: int | None) -> Reviews:
    """The reviews to use, all or ``limit`` of each split."""
    train_texts, train_labels = balanced_sample(dataset["train"].texts, dataset["train"].labels, limit, SAMPLE_SEED)
    test_texts, test_labels = balanced_sample(dataset["test"].texts, dataset["test"].labels, limit, SAMPLE_SEED)
    return Reviews(train_texts, train_labels.astype("float32"), test_texts, test_labels)


def configured(name: str, args: argparse.Namespace) -> presets.TrainingConfig:
    """The preset with the command line's overrides applied."""
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "max_len": args.max_len,
                 "num_words": args.num_words, "seeds": tuple(args.seeds) if args.seeds else None}
    return replace(presets.get(name), **{key: value for key, value in overrides.items() if value is not None})


def tokenize(train: TrainingSet, reviews: Reviews, word_index: dict[str, int], config: presets.TrainingConfig,
             out: Path) -> tuple[Tokenizer, np.ndarray, np.ndarray | None, np.ndarray, VocabularyFile]:
    """The tokenizer, the training (IMDB part, extra), and test reviews as token ids, and the model's vocabulary
    written beside it."""
    tokenizer = Tokenizer(word_index, config.num_words, config.max_len, config.tokenizer)
    x_train, x_test = tokenizer.encode_batch(train.texts), tokenizer.encode_batch(reviews.test_texts)
    x_extra = tokenizer.encode_batch(train.extra_texts) if train.extra_texts else None
    file = f"vocab_{config.num_words}.json"
    sha256 = save_word_index(vocabulary_subset(word_index, config.num_words), out / file)
    return tokenizer, x_train, x_extra, x_test, VocabularyFile(file=file, sha256=sha256)


def choose(name: str, candidates: list[Run]) -> Run:
    """The run with the best validation accuracy. Only that one meets the test set."""
    chosen = max(candidates, key=lambda run: run.best_val_accuracy)
    log.info("%s: kept seed %d (validation accuracy %.4f) of %s", name, chosen.seed, chosen.best_val_accuracy,
             [(run.seed, round(run.best_val_accuracy, 4)) for run in candidates])
    return chosen


def refit_if_asked(name: str, config: presets.TrainingConfig, chosen: Run, x_train: np.ndarray,
                   y_train: np.ndarray, extra: fit.Extra | None, verbose: int, calibrate: bool,
                   word_index: dict[str, int] | None = None) -> tuple[keras.Model, Refit | None]:
    """The model to ship. Presets that ask for it are trained once more, for the epochs validation chose, on
    every training review but the REFIT_CALIBRATION_SPLIT held out for the temperature (on every one without
    calibration); the others ship the chosen run."""
    if not config.refit_on_all_training_reviews:
        return chosen.model, None
    if chosen.best_epoch < 1:
        raise RuntimeError(f"{name}: no epoch improved the validation accuracy; nothing to refit")
    from training import calibrate as calibration
    from training import fit

    split = REFIT_CALIBRATION_SPLIT if calibrate else 0.0
    model, seconds = fit.refit(name, config, chosen.seed, chosen.best_epoch, x_train, y_train, verbose, split, extra,
                               word_index)
    held_out = len(calibration.held_out_indices(len(x_train), chosen.seed, split)) if split else 0
    log.info("%s: refitted on %d training reviews (%d held out for calibration) for %d epochs", name,
             len(x_train) - held_out, held_out, chosen.best_epoch)
    return model, Refit(epochs=chosen.best_epoch, train_reviews=len(x_train) - held_out, seconds=seconds,
                        held_out_split=split or None, held_out_reviews=held_out or None)


def with_short_texts(name: str, config: presets.TrainingConfig, chosen: Run, refitted: Refit | None,
                     train: TrainingSet, cad: dict[str, CadSet] | None, whole: keras.Model,
                     word_index: dict[str, int], verbose: int) -> tuple[keras.Model, ShortTexts]:
    """The routed model (``training/short_texts.py``): a short-text bag trained on the sentences of the reviews the
    kept run fitted on, its epoch chosen on the middle sentences of the reviews that run held out; with a refit, trained
    again for that many epochs on the sentences of the refit's reviews; joined to ``whole`` in one graph."""
    from training import calibrate as calibration
    from training import fit, models, short_texts

    short_config = config.short_texts
    tokenizer = Tokenizer(word_index, short_config.num_words, short_config.max_len, short_config.tokenizer)
    pairs = cad["train"].pairs if cad is not None else []
    copies = config.short_text_cad_sentences
    held_out = calibration.held_out_indices(len(train.texts), chosen.seed, fit.VALIDATION_SPLIT)
    sentences = short_texts.sentence_set(train.texts, train.labels, held_out, pairs, copies)
    run = short_texts.train(f"{name}_short_texts", short_config, chosen.seed, tokenizer, sentences, verbose)
    record = ShortTexts(words=config.short_text_words, fit_sentences=len(sentences.fit_texts),
                        cad_sentence_copies=copies, validation_sentences=len(sentences.validation_texts),
                        best_epoch=run.best_epoch, best_val_accuracy=run.best_val_accuracy, seconds=run.seconds)
    short_model = run.model
    if refitted is not None:
        kept_out = (calibration.held_out_indices(len(train.texts), chosen.seed, refitted.held_out_split)
                    if refitted.held_out_split else np.zeros(0, np.int64))
        again = short_texts.sentence_set(train.texts, train.labels, kept_out, pairs, copies)
        refit_run = short_texts.train(f"{name}_short_texts", short_config, chosen.seed, tokenizer, again, verbose,
                                      epochs=run.best_epoch)
        short_model = refit_run.model
        record = record.model_copy(update={"refit_sentences": len(again.fit_texts),
                                           "refit_seconds": refit_run.seconds})
    return models.assemble(name, config, whole, short_model), record


def evaluate_on_test(name: str, model: keras.Model, x_test: np.ndarray,
                     test_labels: np.ndarray) -> tuple[np.ndarray, TestMetrics]:
    """The shipped model's scores and metrics on the test reviews."""
    from training import evaluate

    scores = model.predict(x_test, batch_size=PREDICT_BATCH_SIZE, verbose=0).reshape(-1)
    metrics = evaluate.test_metrics(test_labels, scores)
    log.info("%s test: accuracy=%.4f loss=%.4f roc_auc=%.4f f1=%.4f", name,
             metrics.accuracy, metrics.loss, metrics.roc_auc, metrics.f1)
    return scores, metrics


def export_with_parity(name: str, model: keras.Model, max_len: int, x_test: np.ndarray,
                       test_scores: np.ndarray) -> tuple[bytes, float]:
    """The ONNX model, and the largest difference between its scores and Keras's on PARITY_REVIEWS
    test reviews (ParityError above the tolerance: nothing is written)."""
    from training import export

    onnx_bytes = export.to_onnx(model, max_len)
    parity = export.check_parity(onnx_bytes, test_scores[:PARITY_REVIEWS], x_test[:PARITY_REVIEWS])
    log.info("%s ONNX parity on %d test reviews: max |difference| = %.2e", name, min(PARITY_REVIEWS, len(x_test)),
             parity)
    return onnx_bytes, parity


def calibrate_if_asked(name: str, onnx_bytes: bytes, training: TrainingRecord, training_config: dict,
                       x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, test_labels: np.ndarray,
                       metrics: TestMetrics, args: argparse.Namespace) -> tuple[bytes, TestMetrics, Calibration | None]:
    """The export to ship and its test metrics: with calibration (the default), the graph with its logit mapped
    by the calibration fitted on the reviews the shipped weights never saw (the kept run's validation split, or
    what the refit held out), its test metrics those of the calibrated scores, and the calibration record
    (the reliability diagram is written into --out); without, the raw export and Keras's metrics."""
    if not args.calibrate:
        return onnx_bytes, metrics, None
    from training import calibrate, evaluate

    held_out = calibrate.calibration_reviews(training)
    result = calibrate.calibrate_export(name, onnx_bytes, x_train[held_out.indices], y_train[held_out.indices],
                                        held_out.description, x_test, test_labels, args.out,
                                        allow_signed=calibrate.signed_allowed(training_config))
    calibrated_metrics = evaluate.test_metrics(test_labels, result.test_scores)
    if calibrated_metrics.confusion_matrix != metrics.confusion_matrix:  # a score within 1e-5 of 0.5 in Keras
        log.warning("%s: the export's test labels differ from Keras's: %s against %s", name,
                    calibrated_metrics.confusion_matrix, metrics.confusion_matrix)
    return result.onnx_bytes, calibrated_metrics, result.calibration


def write_keras_weights(name: str, config: presets.TrainingConfig, model: keras.Model, out: Path) -> None:
    """The Keras weights (for the naive benchmark baseline), written as soon as training ends: a later step that
    fails loses no training."""
    from training import fit

    keras_dir = out / "keras"
    keras_dir.mkdir(exist_ok=True)
    fit.save_weights(name, config, model, keras_dir / f"{name}.weights.h5")


def write_onnx(name: str, onnx_bytes: bytes, out: Path) -> Path:
    onnx_path = out / f"{name}.onnx"
    onnx_path.write_bytes(onnx_bytes)
    return onnx_path


def training_record(config: presets.TrainingConfig, chosen: Run, candidates: list[Run], refitted: Refit | None,
                    train: TrainingSet, reviews: Reviews, data: Path, short: ShortTexts | None = None
                    ) -> TrainingRecord:
    """How the shipped model was trained: the configuration, the chosen run and every seed tried."""
    from training.fit import VALIDATION_SPLIT

    return TrainingRecord(
        optimizer=config.optimizer, learning_rate=config.learning_rate, loss=LOSS, epochs=config.epochs,
        batch_size=config.batch_size, validation_split=VALIDATION_SPLIT, seed=chosen.seed,
        train_reviews=len(train.texts), test_reviews=len(reviews.test_texts), epochs_run=chosen.epochs_run,
        best_epoch=chosen.best_epoch, best_val_accuracy=chosen.best_val_accuracy, seconds=chosen.seconds,
        data=str(data),
        seed_candidates=[SeedCandidate(seed=run.seed, best_epoch=run.best_epoch,
                                       best_val_accuracy=run.best_val_accuracy, seconds=run.seconds)
                         for run in candidates],
        refit_on_all_training_reviews=refitted,
        counterfactual=train.counterfactual,
        short_texts=short,
    )


def build_metadata(name: str, config: presets.TrainingConfig, model: keras.Model, onnx_path: Path,
                   vocabulary: VocabularyFile, parity: float, metrics: TestMetrics, training: TrainingRecord,
                   calibration: Calibration | None, robust: Robustness | None, versions: dict[str, str]
                   ) -> ModelMetadata:
    """The metadata the service reads beside the ONNX model."""
    from training import export, models

    return ModelMetadata(
        name=name,
        architecture=[LayerSummary(**layer) for layer in models.describe(model)],
        parameters=int(model.count_params()),
        max_len=config.max_len,
        num_words=config.num_words,
        tokenizer=config.tokenizer,
        input=InputSpec(name=export.INPUT_NAME, shape=[None, config.max_len]),
        vocabulary=vocabulary,
        onnx_sha256=file_sha256(onnx_path),
        onnx_bytes=onnx_path.stat().st_size,
        onnx_opset=export.OPSET,
        parity_max_abs_diff=parity,
        test_metrics=metrics,
        config=config.to_dict(),
        training=training,
        calibration=calibration,
        robustness=robust,
        library_versions=versions,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0),
    )


def write_history(name: str, history: dict[str, list[float]], out: Path) -> None:
    """The chosen run's training curves, as JSON and as the course's plot."""
    from training import evaluate

    (out / f"{name}_history.json").write_text(json.dumps(history, indent=2) + "\n", encoding="utf-8")
    evaluate.plot_history(history, f"{name}: training and validation", out / f"{name}_history.png")


def measure_robustness(name: str, onnx_bytes: bytes, tokenizer: Tokenizer, config: presets.TrainingConfig,
                       sets: robustness.RobustnessSets | None) -> Robustness | None:
    """The shipped export's figures on the counterfactual dev pairs, the checklist and the snippets."""
    if sets is None:
        return None
    figures = robustness.evaluate(robustness.onnx_scorer(onnx_bytes, tokenizer), sets,
                                  robustness.originals_in_training(config.to_dict()))
    log.info("%s robustness: cad dev edited %.4f (pairs both right %.4f), checklist %.4f, snippets first/last "
             "sentence %.4f/%.4f", name, figures.cad_dev_edited, figures.cad_dev_pair_consistency, figures.checklist,
             figures.snippets_first_sentence, figures.snippets_last_sentence)
    return figures


def train_and_export(name: str, config: presets.TrainingConfig, reviews: Reviews, word_index: dict[str, int],
                     cad: dict[str, CadSet] | None, sets: robustness.RobustnessSets | None,
                     args: argparse.Namespace, versions: dict[str, str]) -> None:
    """Every step for one model."""
    from training import fit, models

    train = training_set(reviews, config, cad)
    tokenizer, x_train, x_extra, x_test, vocabulary = tokenize(train, reviews, word_index, config, args.out)
    extra = None if x_extra is None else (x_extra, train.extra_labels, train.extra_sources)
    whole = config.whole_reviews  # with short_text_words, the bag for the longer texts; else the model itself
    candidates = [fit.train_once(name, whole, seed, x_train, train.labels, args.verbose, extra,
                                 word_index=word_index) for seed in config.seeds]
    chosen = choose(name, candidates)
    model, refitted = refit_if_asked(name, whole, chosen, x_train, train.labels, extra, args.verbose, args.calibrate,
                                     word_index)
    short = None
    if config.short_text_words is not None:
        model, short = with_short_texts(name, config, chosen, refitted, train, cad, model, word_index, args.verbose)
    write_keras_weights(name, config, model, args.out)
    test_scores, metrics = evaluate_on_test(name, model, x_test, reviews.test_labels)
    served = models.folded(model, name, config)  # the parity check compares its export with ``model``'s scores
    onnx_bytes, parity = export_with_parity(name, served, config.max_len, x_test, test_scores)
    training = training_record(config, chosen, candidates, refitted, train, reviews, args.data, short)
    onnx_bytes, metrics, calibration = calibrate_if_asked(name, onnx_bytes, training, config.to_dict(), x_train,
                                                          train.labels, x_test, reviews.test_labels, metrics, args)
    robust = measure_robustness(name, onnx_bytes, tokenizer, config, sets)
    onnx_path = write_onnx(name, onnx_bytes, args.out)
    write_metadata(build_metadata(name, config, served, onnx_path, vocabulary, parity, metrics, training,
                                  calibration, robust, versions), args.out / f"{name}.json")
    write_history(name, chosen.history, args.out)
    log.info("%s written to %s (%.0f s of training)", name, onnx_path, chosen.seconds)


def library_versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import scipy
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
        "scipy": scipy.__version__,
    }


def write_report(out: Path) -> None:
    """REPORT.md for every model in the folder, not only the ones this run trained."""
    from training import evaluate

    everything = [read_metadata(path.with_suffix(".json")) for path in sorted(out.glob("*.onnx"))
                  if path.with_suffix(".json").exists()]
    left_out = [meta.name for meta in everything if not evaluate.reportable(meta)]
    if left_out:
        log.warning("left out of the report, their metadata has no test metrics or training record: %s",
                    ", ".join(left_out))
    experiments_file = out / "experiments.json"
    experiments = json.loads(experiments_file.read_text()) if experiments_file.exists() else None
    robust_file = out / "robust_experiments.json"
    robust_experiments = json.loads(robust_file.read_text()) if robust_file.exists() else None
    evaluate.write_report(everything, out / "REPORT.md", experiments, robust_experiments)
    log.info("report written to %s", out / "REPORT.md")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.report_only:
        try:
            write_report(args.out)
        except MetadataError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    try:
        dataset, word_index = read_inputs(args)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # TensorFlow is imported only from here on, after the cheap checks, so a bad path fails in a second.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    reviews = sample_reviews(dataset, args.limit)
    log.info("data: %d training and %d test reviews from %s", len(reviews.train_texts), len(reviews.test_texts),
             args.data)
    cad = load_counterfactual(dataset, args.data)
    sets = None if cad is None else robustness.robustness_sets(cad["dev"], reviews.test_texts, reviews.test_labels)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = library_versions()
    for name in args.models:
        try:
            train_and_export(name, configured(name, args), reviews, word_index, cad, sets, args, versions)
        except DataError as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            return 2
    write_report(args.out)
    return 0
