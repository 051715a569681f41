"""Keras training runs, for the pipeline (``training/pipeline.py``) and the exploration
(``training/explore.py``): a seeded model, one training run per seed, the refit on every training review,
and the weights-only save.

Imports Keras, and so TensorFlow, at its top: the pipeline and the exploration import this module only
once their cheap argument and data checks have passed, so a bad path fails in a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from artifacts.tokenizer import ID_BLOCKS
from training import lexicon, models
from training.calibrate import shuffled_order, split_point
from training.presets import TrainingConfig

# The last fifth of the (shuffled) training reviews, split where Keras 3's validation_split would split, at
# floor(n * (1 - 0.2)) (training/calibrate.py rebuilds the same split from the seed).
VALIDATION_SPLIT = 0.2

log = logging.getLogger("training")


@dataclass
class Run:
    """One seeded training run; ``model`` holds the weights of its best validation epoch."""

    seed: int
    model: keras.Model
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    seconds: float
    epochs_run: int
    best_epoch: int  # 1-based; 0 when no epoch improved the validation accuracy
    best_val_accuracy: float


# Reviews only ever fitted on: token ids, labels, and the training review each was made from (-1: none).
Extra = tuple[np.ndarray, np.ndarray, np.ndarray]


def split_shuffled(x: np.ndarray, y: np.ndarray, order: np.ndarray, split: float, extra: Extra | None
                   ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """The reviews to fit on and the held-out ones: ``order`` split where Keras 3's ``validation_split`` splits
    (``training.calibrate.held_out_indices`` rebuilds the same held-out reviews), the ``extra`` reviews appended
    to the fitting side (Keras shuffles them in every epoch), but those made from a held-out review. No held-out
    reviews when ``split`` is 0."""
    split_at = split_point(len(order), split)
    fit_x, fit_y = x[order[:split_at]], y[order[:split_at]]
    if extra is not None:
        extra_x, extra_y, sources = extra
        usable = ~np.isin(sources, order[split_at:])
        fit_x, fit_y = np.concatenate([fit_x, extra_x[usable]]), np.concatenate([fit_y, extra_y[usable]])
    held_out = (x[order[split_at:]], y[order[split_at:]]) if split else None
    return (fit_x, fit_y), held_out


def seeded_model(name: str, config: TrainingConfig, seed: int, reviews: int,
                 word_index: Mapping[str, int] | None = None) -> tuple[keras.Model, np.ndarray]:
    """A compiled model and an order for the training reviews, both fixed by ``seed``; with ``lexicon_prior``, its
    lexicon table filled for the words of ``word_index`` (the tokenizer's)."""
    keras.utils.set_random_seed(seed)
    # The archive is ordered by label and Keras takes the validation split from the end: shuffle first.
    order = shuffled_order(seed, reviews)
    model = models.build(name, config)
    if config.lexicon_prior:
        if word_index is None:
            raise ValueError(f"{name} reads a sentiment lexicon: pass the tokenizer's word index")
        models.set_lexicon(model, lexicon.id_valences(word_index, config.num_words, ID_BLOCKS[config.tokenizer]))
    models.compile_for_training(model, config)
    return model, order


def train_once(name: str, config: TrainingConfig, seed: int, x_train: np.ndarray, y_train: np.ndarray,
               verbose: int, extra: Extra | None = None, more_callbacks: list | None = None,
               word_index: Mapping[str, int] | None = None) -> Run:
    """One seeded training run, validated on the last VALIDATION_SPLIT of the shuffled reviews; ``extra``
    reviews (counterfactual copies) are only ever trained on."""
    model, order = seeded_model(name, config, seed, len(x_train), word_index)
    model.summary(print_fn=log.info)
    best = models.BestEpochWeights()
    callbacks = [best, *(more_callbacks or [])]
    if config.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.early_stopping_patience))
    (x_fit, y_fit), validation = split_shuffled(x_train, y_train, order, VALIDATION_SPLIT, extra)
    started = time.perf_counter()
    fitted = model.fit(x_fit, y_fit, epochs=config.epochs, batch_size=config.batch_size, validation_data=validation,
                       callbacks=callbacks, verbose=verbose)
    seconds = round(time.perf_counter() - started, 1)
    history = {key: [float(value) for value in values] for key, values in fitted.history.items()}
    for epoch in range(len(history["loss"])):
        log.info("%s seed %d epoch %d: %s", name, seed, epoch + 1,
                 ", ".join(f"{key}={values[epoch]:.4f}" for key, values in history.items()))
    return Run(seed=seed, model=model, history=history, seconds=seconds, epochs_run=len(history["loss"]),
               best_epoch=best.best_epoch, best_val_accuracy=float(best.best_value))


def refit(name: str, config: TrainingConfig, seed: int, epochs: int, x_train: np.ndarray, y_train: np.ndarray,
          verbose: int, held_out_split: float = 0.0, extra: Extra | None = None,
          word_index: Mapping[str, int] | None = None) -> tuple[keras.Model, float]:
    """The chosen configuration trained again for ``epochs`` epochs (the epoch count comes from the validation
    run), and its seconds of training: on every training review, or, with ``held_out_split``, on all but the
    last ``held_out_split`` of the seed's shuffle, which is held out (Keras reports its loss) and the
    temperature is then fitted on (``training.calibrate.calibration_reviews``); plus the ``extra`` reviews."""
    model, order = seeded_model(name, config, seed, len(x_train), word_index)
    (x_fit, y_fit), held_out = split_shuffled(x_train, y_train, order, held_out_split, extra)
    started = time.perf_counter()
    model.fit(x_fit, y_fit, epochs=epochs, batch_size=config.batch_size, validation_data=held_out, verbose=verbose)
    return model, round(time.perf_counter() - started, 1)


def save_weights(name: str, config: TrainingConfig, model: keras.Model, path: Path) -> None:
    """The model's weights alone, from an uncompiled copy: without the optimizer's state (3x the size with Adam)."""
    weights_only = models.build(name, config)
    weights_only.set_weights(model.get_weights())
    weights_only.save_weights(path)
