"""Which words of a review pushed a model's logit which way: the attribution methods behind ``/explain``.

Blocking numpy and onnxruntime work for the scoring core to run in a worker thread; no HTTP, no asyncio.
A method turns one review's token row into the review's logit and one contribution per position of the row:

* ``BagShares`` (``method: "exact"``), for the fastText-style bag of words and hashed bigrams (``bigram_bag``).
  Its logit is linear in the averaged word and bigram embeddings::

      logit = b + mean_i u[t_i] + mean_j v[h(t_j, t_j+1)]      (over the non-padding ids; START and OOV count)

  Every term is read off the ONNX graph itself with crafted rows, so the n-gram hashing is not implemented a
  second time: the all-padding row gives ``b`` (both means are 0), a row holding only the id ``t`` gives
  ``b + u[t]``, a row holding only ``[t1, t2]`` gives ``b + (u[t1] + u[t2]) / 2 + v[h(t1, t2)]``. A word's
  share is its word term ``u[t_i] / n`` plus half of each of its (one or two) bigram terms ``v / (n - 1)``,
  so ``b`` plus the shares add up to the logit (to float32 rounding, about 1e-6). START's share is folded
  into the bias. Calibration divides the logit by one temperature, which keeps it linear in the terms (a
  signed temperature or a signed power, a map that depends on the logit's sign, would not: ``BagShares``
  refuses such a model).
* ``Occlusion`` (``method: "occlusion"``), for the convolutional and recurrent models and the bags that weigh
  their words by a learned salience (whose shares depend on the review's other words): each word in turn is
  replaced by the out-of-vocabulary id, and its contribution is ``logit(review) - logit(review without it)``.
  The review and its variants are scored together, in calls of at most the model's batch size (the
  batcher's, ``SENTIMENT_BATCH_MAX_SIZE(S)``). A word the model does not know already is OOV: its
  contribution is 0.

Only the words in the model's input get a contribution; the words a long review loses to the ``max_len``
truncation are listed with ``truncated`` set and a contribution of 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from artifacts.metadata import logit_is_linear_in_terms
from artifacts.tokenizer import OOV, PAD, START, EncodedBatch, words_with_offsets
from service.repository import LoadedModel

# Rows per onnxruntime call, unless the core passes the model's batch size. The models' speed per row
# depends on the batch size as in the batcher's measurements (README, Performance): explaining a 230-word
# review (232 rows, 1 thread) took conv1d 54 ms in calls of 16 rows against 65 ms in one call, conv_lstm
# 57 against 72 ms, conv_lstm_tuned 110 against 73 ms (64 rows: 80 ms); bigram_bag 8.5-8.9 ms at any size.
CHUNK_ROWS = 16
# A logit recovered from a probability that saturated at 0 or 1 is infinite; JSON cannot carry that.
LOGIT_LIMIT = 1e3


class ExplainError(Exception):
    """The model answered something an explanation cannot be built from (not finite, not a probability)."""


@dataclass(frozen=True, slots=True)
class TokenContribution:
    text: str  # the word as the tokenizer produced it
    start: int  # offsets into the review as sent: review[start:end].lower() == text (see words_with_offsets)
    end: int
    contribution: float  # effect on the logit; positive pushes towards positive
    truncated: bool  # dropped by the max_len truncation: the model never read it (contribution 0)


@dataclass(frozen=True, slots=True)
class Attribution:
    """One review explained by one model."""

    score: float  # the model's probability, as /predict gives it
    logit: float
    bias: float | None  # exact methods: logit == bias + sum(contributions); None for occlusion
    tokens: list[TokenContribution]


class Method(Protocol):
    name: str

    def explain_row(self, row: np.ndarray) -> tuple[float, float | None, np.ndarray]:
        """For one ``(max_len,)`` token row: its logit, the bias (exact methods) and a float64 contribution
        per position of the row (0 for padding and START)."""


def run_in_chunks(function: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, chunk: int) -> np.ndarray:
    if len(rows) <= chunk:
        return function(rows)
    return np.concatenate([function(rows[i:i + chunk]) for i in range(0, len(rows), chunk)])


def finite_logits(model: LoadedModel, rows: np.ndarray, chunk: int) -> np.ndarray:
    logits = run_in_chunks(model.logits, rows, chunk).astype(np.float64, copy=False)
    if np.isnan(logits).any():
        raise ExplainError(f"model {model.name} returned NaN logits")
    return np.clip(logits, -LOGIT_LIMIT, LOGIT_LIMIT)


class Occlusion:
    name = "occlusion"

    def __init__(self, model: LoadedModel, chunk_rows: int = CHUNK_ROWS):
        self.model, self.chunk_rows = model, chunk_rows

    def explain_row(self, row: np.ndarray) -> tuple[float, None, np.ndarray]:
        positions = np.flatnonzero(row > OOV)  # an OOV word replaced by OOV changes nothing: 0
        variants = np.repeat(row[None, :], len(positions) + 1, axis=0)
        variants[np.arange(1, len(positions) + 1), positions] = OOV
        logits = finite_logits(self.model, variants, self.chunk_rows)
        contributions = np.zeros(len(row))
        contributions[positions] = logits[0] - logits[1:]
        return float(logits[0]), None, contributions


class BagShares:
    """Exact shares for a bag of word and hashed bigram embeddings (see the module docstring). The bias and
    the word terms are kept once computed (one float per vocabulary id); the bigram terms are computed per
    review. Not thread-safe: the core runs one explanation per model at a time."""

    name = "exact"

    def __init__(self, model: LoadedModel, chunk_rows: int = CHUNK_ROWS):
        calibration = model.metadata.calibration
        if calibration is not None and calibration.method != "temperature":  # any other map is not linear
            raise ExplainError(f"model {model.name}: exact shares need a logit linear in its terms, and its "
                               f"{calibration.method} calibration is not; calibrate it with one temperature")
        self.model, self.chunk_rows = model, chunk_rows
        self.max_len = model.metadata.max_len
        self._bias: float | None = None
        self._word_terms = np.full(model.tokenizer.id_count, np.nan)  # u[t], NaN until computed

    @staticmethod
    def applies_to(model: LoadedModel) -> bool:
        """A bag of words and bigrams whose graph gives its logit. (Logits recovered from float32 scores are
        useless here: this model's crafted one- and two-word rows score exactly 0 or 1 before calibration.)"""
        config = model.metadata.config
        return (logit_is_linear_in_terms(config) and list(config.get("ngram_orders") or []) == [2]
                and model.logit_output is not None)

    def explain_row(self, row: np.ndarray) -> tuple[float, float, np.ndarray]:
        first = int(np.argmax(row != PAD)) if row.any() else len(row)
        ids = row[first:].astype(np.int64)  # padding is only at the front
        n = len(ids)
        if n and not (ids != PAD).all():
            raise ExplainError("padding inside a token row")  # the tokenizer never writes one
        word_terms = self._word_terms
        unknown_ids = np.unique(ids[np.isnan(word_terms[ids])]) if n else ids
        pairs = np.unique(np.stack([ids[:-1], ids[1:]], axis=1), axis=0, return_inverse=True) if n > 1 else None
        distinct_pairs = pairs[0] if pairs is not None else np.zeros((0, 2), np.int64)
        # Rows: [all padding, if b is not known yet], one per new single id, one per distinct pair, the review.
        need_bias = self._bias is None
        crafted = np.zeros((need_bias + len(unknown_ids) + len(distinct_pairs) + 1, self.max_len), row.dtype)
        singles_at = int(need_bias)
        pairs_at = singles_at + len(unknown_ids)
        crafted[singles_at:pairs_at, -1] = unknown_ids
        crafted[pairs_at:-1, -2:] = distinct_pairs
        crafted[-1] = row
        logits = finite_logits(self.model, crafted, self.chunk_rows)
        if need_bias:
            self._bias = float(logits[0])
        bias = self._bias
        word_terms[unknown_ids] = logits[singles_at:pairs_at] - bias
        logit = float(logits[-1])
        contributions = np.zeros(len(row))
        if n == 0:
            return logit, bias, contributions
        shares = word_terms[ids] / n
        if pairs is not None:
            first_ids, second_ids = distinct_pairs[:, 0], distinct_pairs[:, 1]
            bigram_terms = (logits[pairs_at:-1] - bias - (word_terms[first_ids] + word_terms[second_ids]) / 2)
            halves = bigram_terms[pairs[1].reshape(-1)] / (2 * (n - 1))  # per bigram j (words j and j + 1)
            shares[:-1] += halves
            shares[1:] += halves
        if ids[0] == START:  # START is no word of the review: its share goes to the bias
            bias += float(shares[0])
            shares[0] = 0.0
        contributions[first:] = shares
        return logit, bias, contributions


def method_for(model: LoadedModel, chunk_rows: int = CHUNK_ROWS) -> Method:
    return (BagShares if BagShares.applies_to(model) else Occlusion)(model, chunk_rows)


def attribute(method: Method, model: LoadedModel, reviews: Sequence[str], encoded: EncodedBatch,
              scores: Sequence[float]) -> list[Attribution]:
    """Each review's words with their offsets and contributions; ``encoded`` is what the model read and
    ``scores`` its probabilities for those rows."""
    max_len = model.metadata.max_len
    attributions = []
    for review, row, kept, score in zip(reviews, encoded.tokens, encoded.words_read().tolist(), scores,
                                        strict=True):
        words = words_with_offsets(review)
        dropped = len(words) - kept
        if dropped < 0 or (dropped and kept < max_len):
            raise ExplainError(f"the tokenizer read {kept} words of a review in which words_with_offsets "
                               f"found {len(words)}")  # tested never to happen
        logit, bias, contributions = method.explain_row(row)
        tokens = [TokenContribution(text, start, end, 0.0, True) for text, start, end in words[:dropped]]
        tokens += [TokenContribution(text, start, end, contribution, False) for (text, start, end), contribution
                   in zip(words[dropped:], contributions[max_len - kept:].tolist(), strict=True)]
        attributions.append(Attribution(score, logit, bias, tokens))
    return attributions
