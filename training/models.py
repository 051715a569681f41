"""The two architecture families, built from a ``TrainingConfig``.

With the course presets they are exactly the course models:

* conv1d: Embedding(10000,128) → Conv1D(32,7,relu) → MaxPooling1D(5) → Conv1D(32,7,relu) → GlobalMaxPooling1D → Dense(1)
* conv_lstm: Embedding(10000,128) → Conv1D(32,5,relu) → MaxPooling1D(3) → Conv1D(32,5,relu) → LSTM(32) → Dense(1)

Every model ends in ``Dense(1, activation="sigmoid")``. The course listing has a bare ``Dense(1)``
while it trains with binary cross-entropy on probabilities; the sigmoid is the deliberate fix that
makes the output a probability, and adds no parameters.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.presets import TrainingConfig

RECURRENT = {
    "lstm": lambda units: layers.LSTM(units),
    "gru": lambda units: layers.GRU(units),
    "bilstm": lambda units: layers.Bidirectional(layers.LSTM(units)),
    "bigru": lambda units: layers.Bidirectional(layers.GRU(units)),
}


class HashedBigrams(layers.Layer):
    """Token ids -> an id in 1..buckets for each pair of adjacent words; 0 where a word is padding."""

    def __init__(self, buckets: int, num_words: int, **kwargs):
        super().__init__(**kwargs)
        if num_words * num_words >= 2**31:
            raise ValueError(f"bigram ids of a {num_words}-word vocabulary overflow int32; use at most 46,340 words")
        self.buckets, self.num_words = buckets, num_words

    def call(self, tokens):
        first, second = tokens[:, :-1], tokens[:, 1:]
        ids = keras.ops.mod(first * self.num_words + second, self.buckets) + 1  # a distinct pair -> a distinct int
        return keras.ops.where(keras.ops.logical_and(first > 0, second > 0), ids, keras.ops.zeros_like(ids))


class MaskedMean(layers.Layer):
    """Mean of the embeddings whose id is not 0 (padding)."""

    def call(self, inputs):
        embedded, ids = inputs
        mask = keras.ops.expand_dims(keras.ops.cast(ids > 0, embedded.dtype), -1)
        return keras.ops.sum(embedded * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


def build(name: str, config: TrainingConfig) -> keras.Model:
    tokens = keras.Input((config.max_len,), dtype="int32", name="tokens")
    x = layers.Embedding(config.num_words, config.embedding_dim)(tokens)
    if config.spatial_dropout:
        x = layers.SpatialDropout1D(config.spatial_dropout)(x)
    x = layers.Conv1D(config.filters, config.kernel_size, activation="relu")(x)
    x = layers.MaxPooling1D(config.pool_size)(x)
    features = layers.Conv1D(config.filters, config.kernel_size, activation="relu")(x)
    if config.family == "conv1d":
        x = layers.GlobalMaxPooling1D()(features)
        if config.pooling == "max+avg":
            x = layers.Concatenate()([x, layers.GlobalAveragePooling1D()(features)])
    elif config.family == "conv_lstm":
        x = RECURRENT[config.recurrent](config.recurrent_units)(features)
    else:
        raise ValueError(f"unknown architecture family {config.family!r}")
    if config.bigram_buckets:
        bigrams = HashedBigrams(config.bigram_buckets, config.num_words)(tokens)
        bag = layers.Embedding(config.bigram_buckets + 1, config.bigram_dim)(bigrams)
        x = layers.Concatenate()([x, MaskedMean()([bag, bigrams])])
    if config.dropout:
        x = layers.Dropout(config.dropout)(x)
    score = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(tokens, score, name=name)


def compile_for_training(model: keras.Model, config: TrainingConfig) -> None:
    optimizers = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    model.compile(optimizer=optimizers[config.optimizer](learning_rate=config.learning_rate),
                  loss="binary_crossentropy", metrics=["accuracy"])


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
        if not isinstance(layer, keras.layers.InputLayer)
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
