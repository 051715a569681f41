"""The architecture families, built from a ``TrainingConfig``.

With the course presets they are exactly the course models:

* conv1d: Embedding(10000,128) → Conv1D(32,7,relu) → MaxPooling1D(5) → Conv1D(32,7,relu) → GlobalMaxPooling1D → Dense(1)
* conv_lstm: Embedding(10000,128) → Conv1D(32,5,relu) → MaxPooling1D(3) → Conv1D(32,5,relu) → LSTM(32) → Dense(1)

The "bag" family (fastText-style averaged word and hashed n-gram embeddings) was added by the
exploration for the course's "Your turn" question; ``bag_pooling="salience"`` weighs the embeddings by a learned
salience per id instead of averaging them (issue #16, ``robust_bag``), and ``concession_weight`` reads a word a contrast
outweighs as the word itself at that fraction of its weight (``Conceded``, ``ConcessionOffset``), and
``concession_cap`` clips what those words say to a share of what the others say (``ConcededParts``,
``CappedConcession``); ``lexicon_prior`` adds the mean valence of the review's words in a sentiment lexicon as one
more feature (``LexiconMean``, ``training/lexicon.py``); ``short_text_words`` joins two bags in one graph, one
for the texts of at most that many words, trained on sentences (``training/short_texts.py``), and one for the
others (``routed``).

Every model ends in ``Dense(1, activation="sigmoid")`` (with ``concession_cap``, a ``Dense(1)`` without bias read
on both parts, ``CappedConcession`` and a sigmoid). The course listing has a bare ``Dense(1)``
while it trains with binary cross-entropy on probabilities; the sigmoid is the deliberate fix that
makes the output a probability, and adds no parameters.
"""

from __future__ import annotations

from dataclasses import replace

import keras
import numpy as np
from keras import layers

from artifacts.tokenizer import OUTWEIGHED, PAD
from training.presets import TrainingConfig

# The names of a routed model's two bags (``routed``).
WHOLE_REVIEWS, SHORT_TEXTS = "whole_reviews", "short_texts"
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
    """Mean of the embeddings whose id is not 0 (padding).

    With ``l1`` > 0, while training, also a penalty of ``l1`` times the mean L1 norm of the review's embeddings
    (averaged over the batch): every occurrence of a word pays the same price for its row, so a word keeps a row
    only where what it says about the label outweighs ``l1`` at each occurrence. A frequent word that says little
    ("the", "was", "script": in a long review their pulls cancel out, in a five-word one they decide it) is pushed
    to the zero row, which reads as the bias."""

    def __init__(self, l1: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1 = l1

    def call(self, inputs, training=None):
        embedded, ids = inputs
        mask = keras.ops.expand_dims(keras.ops.cast(ids > 0, embedded.dtype), -1)
        count = keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)
        if self.l1 and training:  # not in the validation loss (the explored runs had it there: see explore_robust)
            self.add_loss(self.l1 * keras.ops.mean(keras.ops.sum(keras.ops.abs(embedded) * mask, axis=(1, 2))
                                                   / keras.ops.squeeze(count, -1)))
        return keras.ops.sum(embedded * mask, axis=1) / count

    def get_config(self):
        return {**super().get_config(), "l1": self.l1}


class WeightedMean(layers.Layer):
    """Mean of the embeddings whose id is not 0, each weighted by exp of its id's learned salience (a softmax over
    the review's ids): with equal saliences, ``MaskedMean``. A mean gives each word 1/n of a short review, so
    in "The script was original." the three plain words outweigh the one that says something; a learned
    salience lets the words that carry sentiment keep their weight however many others stand beside them."""

    def call(self, inputs):
        embedded, ids, salience = inputs  # salience: (batch, length, 1)
        weights = salience_weights(ids, salience)
        return keras.ops.sum(embedded * weights, axis=1) / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1e-9)


def salience_weights(ids, salience):
    """(batch, length, 1): exp of each id's salience less the review's largest (a softmax's numerators), 0 for
    padding."""
    present = keras.ops.expand_dims(ids > 0, -1)
    lowest = keras.ops.full_like(salience, -1e9)
    shifted = salience - keras.ops.max(keras.ops.where(present, salience, lowest), axis=1, keepdims=True)
    return keras.ops.where(present, keras.ops.exp(keras.ops.minimum(shifted, 0.0)), 0.0)


class ConcededParts(layers.Layer):
    """``WeightedMean`` in two parts that add up to it, (batch, 2, dim): the sum over the plain words and the sum
    over the conceded ones (``mask``, ``OutweighedMask``'s), each divided by the weight of the whole review, so that
    ``CappedConcession`` can weigh what the conceded words say against what the others say."""

    def call(self, inputs):
        embedded, ids, salience, mask = inputs  # mask: (batch, length, 1), 1.0 where a contrast outweighs the word
        weights = salience_weights(ids, salience)
        total = keras.ops.maximum(keras.ops.sum(weights, axis=1), 1e-9)
        conceded = weights * mask
        return keras.ops.stack([keras.ops.sum(embedded * (weights - conceded), axis=1) / total,
                                keras.ops.sum(embedded * conceded, axis=1) / total], axis=1)


def pooled(embedded, ids, config: TrainingConfig, table_rows: int, name: str, offset=None, mask=None):
    """The review's embedding: ``MaskedMean`` or, with ``bag_pooling="salience"``, ``WeightedMean`` with one
    learned salience per id (starting at 0: a plain mean), plus ``offset`` (``ConcessionOffset``'s) where given;
    with ``mask`` (``OutweighedMask``'s), ``ConcededParts``' two parts instead of their sum."""
    if config.bag_pooling == "mean":
        return MaskedMean(config.term_l1, name=f"{name}_mean")([embedded, ids])
    salience = layers.Embedding(table_rows, 1, embeddings_initializer="zeros", name=f"{name}_salience")(ids)
    if offset is not None:
        salience = layers.Add(name=f"{name}_conceded_salience")([salience, offset])
    if mask is not None:
        return ConcededParts(name=f"{name}_conceded_parts")([embedded, ids, salience, mask])
    return WeightedMean(name=f"{name}_weighted_mean")([embedded, ids, salience])


def outweighed(ids, num_words: int):
    """Where a scoped tokenizer rule's ids stand for a word a contrast outweighs: its blocks ``OUTWEIGHED`` and
    ``OUTWEIGHED | NEGATED`` (``artifacts/tokenizer.py``), the ids from ``OUTWEIGHED * num_words`` on."""
    return ids >= OUTWEIGHED * num_words


class Conceded(layers.Layer):
    """Ids of a scoped tokenizer rule -> the same ids with a word that a contrast outweighs read as the word itself
    (blocks 2 and 3, outweighed and outweighed-negated, as blocks 0 and 1). ``ConcessionOffset`` gives the weight
    such a word then has."""

    def __init__(self, num_words: int, **kwargs):
        super().__init__(**kwargs)
        self.num_words = num_words

    def call(self, ids):
        return keras.ops.where(outweighed(ids, self.num_words), ids - OUTWEIGHED * self.num_words, ids)

    def get_config(self):
        return {**super().get_config(), "num_words": self.num_words}


class ConcessionOffset(layers.Layer):
    """Ids of a scoped tokenizer rule -> a salience offset per position, ``log(weight)`` where a contrast outweighs
    the word, else 0: with ``WeightedMean`` and ``Conceded``, a conceded word says what it says elsewhere with
    ``weight`` times its weight. "A, but B" then reads mostly as B, as English reads it, which IMDB does not teach a
    row of its own (the outweighed row of "bad" learned to pull -21.0 against -22.7 for the plain one). The weight
    is a prior, not learned: learned, IMDB's long reviews would take it back to 1."""

    def __init__(self, num_words: int, weight: float, **kwargs):
        super().__init__(**kwargs)  # the weight is checked where it is set: TrainingConfig
        self.num_words, self.weight = num_words, weight

    def call(self, ids):
        offset = keras.ops.where(outweighed(ids, self.num_words), np.float32(np.log(self.weight)), np.float32(0.0))
        return keras.ops.expand_dims(offset, -1)

    def get_config(self):
        return {**super().get_config(), "num_words": self.num_words, "weight": self.weight}


class OutweighedMask(layers.Layer):
    """Ids of a scoped tokenizer rule -> (batch, length, 1): 1.0 where a contrast outweighs the word, else 0.0."""

    def __init__(self, num_words: int, **kwargs):
        super().__init__(**kwargs)
        self.num_words = num_words

    def call(self, ids):
        return keras.ops.expand_dims(keras.ops.cast(outweighed(ids, self.num_words), "float32"), -1)

    def get_config(self):
        return {**super().get_config(), "num_words": self.num_words}


class CappedConcession(layers.Layer):
    """(batch, 2, 1), the plain words' pull and the conceded words' pull -> (batch, 1), the logit: the plain pull,
    plus the conceded pull clipped to at most ``cap`` times the plain one's size, plus a learned bias. "A, but B"
    then reads as B tempered by A at most, never overturned by it: with the conceded weight alone, a strong word
    before the "but" still outweighs a mild one after it ("The music was awful, but the movie was good.": "awful" at
    half its weight pulled -12.4 on the logit, "good" +3.9). The cap is a prior, not learned, as the weight is;
    where the conceded words pull the same way as the others, or less than the cap, the logit is the uncapped bag's.
    """

    def __init__(self, cap: float, **kwargs):
        super().__init__(**kwargs)  # the cap is checked where it is set: TrainingConfig
        self.cap = cap

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(1,), initializer="zeros", name="bias")

    def call(self, inputs):
        plain, conceded = inputs[:, 0], inputs[:, 1]
        limit = self.cap * keras.ops.abs(plain)
        return plain + keras.ops.minimum(keras.ops.maximum(conceded, -limit), limit) + self.bias

    def get_config(self):
        return {**super().get_config(), "cap": self.cap}


class LexiconMean(layers.Layer):
    """Ids of a review (and ``ConcessionOffset``'s offsets, where the model has them) -> one feature: the mean valence
    of its rated words (``training/lexicon.py``), each weighed as the bag weighs it (a conceded word at the conceded
    weight), or 0 where no word is rated. The mean over rated words alone reads "I absolutely loathed this film." as
    the valence of "loathed", not a fifth of it; the output layer learns how much to make of it.

    The table is a constant: ``valences`` is not trained, starts at zeros and is filled by ``set_lexicon`` (or by
    loading saved weights)."""

    def __init__(self, rows: int, **kwargs):
        super().__init__(**kwargs)
        self.rows = rows

    def build(self, input_shape):
        self.valences = self.add_weight(shape=(self.rows,), initializer="zeros", trainable=False, name="valences")

    def call(self, inputs):
        ids, offset = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        valence = keras.ops.take(self.valences, ids, axis=0)
        weight = keras.ops.cast(keras.ops.not_equal(valence, 0.0), valence.dtype)
        if offset is not None:
            weight = weight * keras.ops.exp(keras.ops.squeeze(offset, -1))
        # no rated word: 0 / 1e-9, as WeightedMean divides
        return (keras.ops.sum(valence * weight, axis=1, keepdims=True)
                / keras.ops.maximum(keras.ops.sum(weight, axis=1, keepdims=True), 1e-9))

    def get_config(self):
        return {**super().get_config(), "rows": self.rows}


def set_lexicon(model: keras.Model, valences: np.ndarray) -> None:
    """Fills a model's ``LexiconMean`` table (``training.lexicon.id_valences``)."""
    layer = model.get_layer("lexicon_mean")
    if valences.shape != (layer.rows,):
        raise ValueError(f"the lexicon table has shape {valences.shape}, the model reads {layer.rows} ids")
    layer.valences.assign(valences.astype(np.float32))


def ngram_means(tokens, config: TrainingConfig, offset=None, mask=None) -> list:
    """One averaged n-gram embedding per order in ``config.ngram_orders``; with ``offset`` (``ConcessionOffset``'s, per
    position), each n-gram weighed as its first word; with ``mask``, conceded where its first word is."""
    means = []
    for n in config.ngram_orders:
        ids = HashedNgrams(n, config.ngram_buckets_log2, config.input_ids, name=f"hashed_{n}grams")(tokens)
        rows = 2**config.ngram_buckets_log2 + 1
        embedded = layers.Embedding(rows, config.ngram_dim, name=f"{n}gram_embedding")(ids)
        first_words = None if offset is None else offset[:, :config.max_len - n + 1]
        first_conceded = None if mask is None else mask[:, :config.max_len - n + 1]
        means.append(pooled(embedded, ids, config, rows, f"{n}gram", first_words, first_conceded))
    return means


def build(name: str, config: TrainingConfig, logit: bool = False) -> keras.Model:
    """The model of ``config``, ending in its score (with ``logit``, in the logit the sigmoid would read: the same
    weights); with ``short_text_words``, the two bags and the route between them (``routed``)."""
    if config.short_text_words is not None:
        return routed(name, config)
    tokens = keras.Input((config.max_len,), dtype="int32", name="tokens")
    activation = None if logit else "sigmoid"
    if config.concession_cap is not None:
        pulls = layers.Dense(1, use_bias=False, name="pull")(bag_features(tokens, config))  # one row, both parts
        logit_ = CappedConcession(config.concession_cap, name="capped_concession")(pulls)
        return keras.Model(tokens, layers.Activation(activation, name="score")(logit_), name=name)
    x = bag_features(tokens, config) if config.family == "bag" else conv_features(tokens, config)
    if config.dropout:
        x = layers.Dropout(config.dropout)(x)
    score = layers.Dense(1, activation=activation)(x)
    return keras.Model(tokens, score, name=name)


class LastIds(layers.Layer):
    """(batch, length) ids -> their last ``count``: with the tokenizer's padding and truncation at the front, the
    row a tokenizer of that length gives, for every text of fewer than ``count`` words."""

    def __init__(self, count: int, **kwargs):
        super().__init__(**kwargs)
        self.count = count

    def call(self, ids):
        return ids[:, -self.count:]

    def get_config(self):
        return {**super().get_config(), "count": self.count}


class RouteByLength(layers.Layer):
    """[ids, logit of the whole-review bag, logit of the short-text bag] -> the short-text bag's logit for a row of
    at most ``words`` words (its ids that are not padding, less START), the other's for the rest."""

    def __init__(self, words: int, **kwargs):
        super().__init__(**kwargs)
        self.words = words

    def call(self, inputs):
        ids, whole, short = inputs
        read = keras.ops.sum(keras.ops.cast(ids != PAD, "int32"), axis=1, keepdims=True) - 1  # START is no word
        return keras.ops.where(read <= self.words, short, whole)

    def get_config(self):
        return {**super().get_config(), "words": self.words}


def routed(name: str, config: TrainingConfig) -> keras.Model:
    """``config.whole_reviews``' model and ``config.short_texts``' (read on the row's last ids), each as its logit,
    one of the two logits chosen by the text's length (``RouteByLength``), and the sigmoid: the model for every
    length, exported as one graph. ``assemble`` fills it with the two trained models' weights."""
    tokens = keras.Input((config.max_len,), dtype="int32", name="tokens")
    whole = build(WHOLE_REVIEWS, config.whole_reviews, logit=True)(tokens)
    short_config = config.short_texts
    short = build(SHORT_TEXTS, short_config, logit=True)(LastIds(short_config.max_len, name="last_ids")(tokens))
    chosen = RouteByLength(config.short_text_words, name="route_by_length")([tokens, whole, short])
    return keras.Model(tokens, layers.Activation("sigmoid", name="score")(chosen), name=name)


def assemble(name: str, config: TrainingConfig, whole: keras.Model, short: keras.Model) -> keras.Model:
    """``routed``'s model with the weights of the trained ``whole`` (``config.whole_reviews``) and ``short``
    (``config.short_texts``) models: a logit and a score model of one configuration hold the same weights."""
    model = routed(name, config)
    model.get_layer(WHOLE_REVIEWS).set_weights(whole.get_weights())
    model.get_layer(SHORT_TEXTS).set_weights(short.get_weights())
    return model


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


class ScopedEmbedding(layers.Layer):
    """A word embedding for the scoped tokenizer rules whose scoped rows are built from the plain ones.

    The scoped rules give a known word one id per scope (``artifacts/tokenizer.py``: plain, negated, outweighed by
    a contrast, both), so a word seen negated only a few times in training has its own, barely trained row. Here
    the row of word ``w`` in block ``b`` is ``E[w] @ M_b + D_b[w]``: one learned map per block (``M_b``, starting
    at the identity) says what a negation or a contrast does to every word, and a small per-word residual
    (``D_b``, starting at 0, L2-penalised) keeps what is particular to a word. "never tedious" then reads as
    what the map learned negation does to "tedious", even where the pair is rare. Block 0 is ``E`` itself.

    The table is linear in its weights and the lookup is a gather, so ``table()`` folds into one plain
    ``Embedding`` for export (``folded``): the served graph is the same as a plain bag model's.
    """

    def __init__(self, num_words: int, blocks: int, dim: int, residual_l2: float, **kwargs):
        super().__init__(**kwargs)
        if blocks < 2:
            raise ValueError(f"a scoped embedding needs at least two id blocks, got {blocks}")
        self.num_words, self.blocks, self.dim, self.residual_l2 = num_words, blocks, dim, residual_l2

    def build(self, input_shape):
        scoped = self.blocks - 1
        self.base = self.add_weight(shape=(self.num_words, self.dim), initializer="uniform", name="base")
        self.maps = self.add_weight(shape=(scoped, self.dim, self.dim), name="maps",
                                    initializer=lambda shape, dtype=None: keras.ops.tile(
                                        keras.ops.expand_dims(keras.ops.eye(self.dim, dtype=dtype), 0),
                                        (scoped, 1, 1)))
        self.residual = self.add_weight(shape=(scoped, self.num_words, self.dim), initializer="zeros",
                                        regularizer=keras.regularizers.L2(self.residual_l2), name="residual")

    def table(self):
        """Every id's row: (blocks * num_words, dim), block by block as the tokenizer numbers them."""
        scoped = keras.ops.einsum("nd,bde->bne", self.base, self.maps) + self.residual
        return keras.ops.concatenate([self.base, keras.ops.reshape(scoped, (-1, self.dim))], axis=0)

    def call(self, ids):
        return keras.ops.take(self.table(), ids, axis=0)

    def get_config(self):
        return {**super().get_config(), "num_words": self.num_words, "blocks": self.blocks, "dim": self.dim,
                "residual_l2": self.residual_l2}


def bag_features(tokens, config: TrainingConfig):
    """fastText-style: averaged word embeddings beside averaged hashed n-gram embeddings; with ``concession_cap``,
    (batch, 2, features): two such vectors that add up to it, the plain words' part and the conceded words' part
    (``ConcededParts``)."""
    offset = mask = None
    if config.concession_weight is not None:
        offset = ConcessionOffset(config.num_words, config.concession_weight, name="concession_offset")(tokens)
        if config.concession_cap is not None:
            mask = OutweighedMask(config.num_words, name="outweighed")(tokens)
        tokens = Conceded(config.num_words, name="conceded")(tokens)
    if config.scope_prior:
        words = ScopedEmbedding(config.num_words, config.input_ids // config.num_words, config.embedding_dim,
                                config.scope_residual_l2, name="word_embedding")(tokens)
    else:
        words = layers.Embedding(config.input_ids, config.embedding_dim, name="word_embedding")(tokens)
    features = [pooled(words, tokens, config, config.input_ids, "word", offset, mask),
                *ngram_means(tokens, config, offset, mask)]
    if mask is not None:  # TrainingConfig rules out the lexicon here
        return layers.Concatenate(name="parts")(features)
    if config.lexicon_prior:
        lexicon_input = tokens if offset is None else [tokens, offset]
        features.append(LexiconMean(config.input_ids, name="lexicon_mean")(lexicon_input))
    return layers.Concatenate()(features)


def folded(model: keras.Model, name: str, config: TrainingConfig) -> keras.Model:
    """The model to export: with a ``ScopedEmbedding``, the same model with its table folded into one plain
    ``Embedding`` (the same scores: the pipeline's parity check compares the export with ``model``); else
    ``model`` itself."""
    if not config.scope_prior:
        return model
    plain = build(name, replace(config, scope_prior=False))
    for layer, plain_layer in zip(model.layers, plain.layers, strict=True):  # one architecture, one layer order
        weights = ([keras.ops.convert_to_numpy(layer.table())] if isinstance(layer, ScopedEmbedding)
                   else layer.get_weights())
        plain_layer.set_weights(weights)
    return plain


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
