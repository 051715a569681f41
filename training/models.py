"""The two course architectures.

Both end in ``Dense(1, activation="sigmoid")``. The course listing has a bare ``Dense(1)`` while it
trains with binary cross-entropy on probabilities; the sigmoid is the deliberate fix that makes the
output a probability, and adds no parameters.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

EMBEDDING_DIM = 128
FILTERS = 32


def conv1d(num_words: int, max_len: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((max_len,), dtype="int32", name="tokens"),
            layers.Embedding(num_words, EMBEDDING_DIM),
            layers.Conv1D(FILTERS, 7, activation="relu"),
            layers.MaxPooling1D(5),
            layers.Conv1D(FILTERS, 7, activation="relu"),
            layers.GlobalMaxPooling1D(),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="conv1d",
    )


def conv_lstm(num_words: int, max_len: int) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((max_len,), dtype="int32", name="tokens"),
            layers.Embedding(num_words, EMBEDDING_DIM),
            layers.Conv1D(FILTERS, 5, activation="relu"),
            layers.MaxPooling1D(3),
            layers.Conv1D(FILTERS, 5, activation="relu"),
            layers.LSTM(32),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="conv_lstm",
    )


ARCHITECTURES = {"conv1d": conv1d, "conv_lstm": conv_lstm}


def build(name: str, num_words: int, max_len: int) -> keras.Model:
    try:
        builder = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ARCHITECTURES)}") from None
    return builder(num_words, max_len)


def describe(model: keras.Model) -> list[dict]:
    """Layer names, kinds, output shapes and parameter counts, for metadata and tests."""
    return [
        {
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(layer.output.shape),
            "params": layer.count_params(),
        }
        for layer in model.layers
    ]


class BestEpochWeights(keras.callbacks.Callback):
    """Restores, at the end of training, the weights of the epoch with the best validation accuracy."""

    def __init__(self):
        super().__init__()
        self.best_epoch, self.best_value, self.best_weights = 0, -np.inf, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy", -np.inf)
        if value > self.best_value:  # strict: the first of equal epochs wins
            self.best_epoch, self.best_value = epoch + 1, value
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
