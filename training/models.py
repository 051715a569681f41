"""The architecture families, built from a ``TrainingConfig``.

With the course presets they are exactly the course models:

* conv1d: Embedding(10000,128) → Conv1D(32,7,relu) → MaxPooling1D(5) → Conv1D(32,7,relu) → GlobalMaxPooling1D → Dense(1)
* conv_lstm: Embedding(10000,128) → Conv1D(32,5,relu) → MaxPooling1D(3) → Conv1D(32,5,relu) → LSTM(32) → Dense(1)

The "bag" family (fastText-style averaged word and hashed n-gram embeddings) was added by the
exploration for the course's "Your turn" question.

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


class HashedNgrams(layers.Layer):
    """Token ids -> for each run of ``n`` adjacent words, a bucket id in 1..2**buckets_log2; 0 where any
    word of the run is padding.

    A run's key is its ids in base ``num_words`` modulo a prime (exact for bigrams of up to 46,340
    words); Fibonacci hashing (multiply by 2**32 / golden ratio, keep the top bits of the low 32) then
    spreads keys evenly, so frequent n-grams rarely share a bucket. All of it fits in int64.
    """

    MULTIPLIER = 2654435761
    PRIME = 2**31 - 1

    def __init__(self, n: int, buckets_log2: int, num_words: int, **kwargs):
        super().__init__(**kwargs)
        if n < 2:
            raise ValueError(f"n-grams need n >= 2, got {n}")
        if not 1 <= buckets_log2 <= 30:
            raise ValueError(f"ngram_buckets_log2 must be within 1..30, got {buckets_log2}")
        self.n, self.buckets_log2, self.num_words = n, buckets_log2, num_words

    def call(self, tokens):
        tokens = keras.ops.cast(tokens, "int64")
        length = tokens.shape[1] - self.n + 1
        key, present = tokens[:, :length], tokens[:, :length] > 0
        for offset in range(1, self.n):
            word = tokens[:, offset:offset + length]
            key = keras.ops.mod(key * np.int64(self.num_words) + word, np.int64(self.PRIME))
            present = keras.ops.logical_and(present, word > 0)
        low_bits = keras.ops.mod(key * np.int64(self.MULTIPLIER), np.int64(2**32))
        bucket = keras.ops.floor_divide(low_bits, np.int64(2 ** (32 - self.buckets_log2))) + np.int64(1)
        return keras.ops.cast(keras.ops.where(present, bucket, keras.ops.zeros_like(bucket)), "int32")

    def get_config(self):
        return {**super().get_config(), "n": self.n, "buckets_log2": self.buckets_log2, "num_words": self.num_words}


class MaskedMean(layers.Layer):
    """Mean of the embeddings whose id is not 0 (padding)."""

    def call(self, inputs):
        embedded, ids = inputs
        mask = keras.ops.expand_dims(keras.ops.cast(ids > 0, embedded.dtype), -1)
        return keras.ops.sum(embedded * mask, axis=1) / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


def ngram_means(tokens, config: TrainingConfig) -> list:
    """One averaged n-gram embedding per order in ``config.ngram_orders``."""
    means = []
    for n in config.ngram_orders:
        ids = HashedNgrams(n, config.ngram_buckets_log2, config.input_ids, name=f"hashed_{n}grams")(tokens)
        embedded = layers.Embedding(2**config.ngram_buckets_log2 + 1, config.ngram_dim, name=f"{n}gram_embedding")(ids)
        means.append(MaskedMean(name=f"{n}gram_mean")([embedded, ids]))
    return means


def build(name: str, config: TrainingConfig) -> keras.Model:
    tokens = keras.Input((config.max_len,), dtype="int32", name="tokens")
    x = bag_features(tokens, config) if config.family == "bag" else conv_features(tokens, config)
    if config.dropout:
        x = layers.Dropout(config.dropout)(x)
    score = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(tokens, score, name=name)


def conv_features(tokens, config: TrainingConfig):
    """The conv1d and conv_lstm families, with the optional hashed n-gram branch beside them."""
    x = layers.Embedding(config.input_ids, config.embedding_dim)(tokens)
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
    if config.ngram_orders:
        x = layers.Concatenate()([x, *ngram_means(tokens, config)])
    return x


def bag_features(tokens, config: TrainingConfig):
    """fastText-style: averaged word embeddings beside averaged hashed n-gram embeddings."""
    words = layers.Embedding(config.input_ids, config.embedding_dim, name="word_embedding")(tokens)
    return layers.Concatenate()([MaskedMean(name="word_mean")([words, tokens]), *ngram_means(tokens, config)])


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
