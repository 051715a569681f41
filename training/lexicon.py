"""A sentiment lexicon as a prior for the bag models: one valence per id of the model's input.

IMDB's training reviews teach a bag of words the words they use often; a word they use seldom ("loathed" is
word 18,414 of the 20,000 a bag reads) keeps a row that says little, and reviews from elsewhere use many such
words. VADER's lexicon (Hutto and Gilbert, ICWSM 2014; the ``vaderSentiment`` package, MIT licence) gives 7,500
English words a mean human rating of their sentiment from -4 to +4, written without looking at IMDB. A bag with
``lexicon_prior`` reads it beside its learned rows (``training/models.py`` ``LexiconMean``): the mean valence of the
review's rated words, one more feature for its output layer, so a rated word says what the raters said however
seldom IMDB uses it.

The valence of an id follows the tokenizer rule's id blocks (``artifacts/tokenizer.py``): a word in a negation's
scope has its valence times ``NEGATED_SCALE`` (VADER's own ``N_SCALAR``), a word a contrast outweighs its plain
valence (the model's conceded weight, where it has one, weighs it), and the words that open a negation
(``negator``) have none: what they say is the turn of the word they negate.

Training only: the table is a constant of the exported graph; the service never reads the lexicon.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib.resources import files

import numpy as np

from artifacts.tokenizer import NEGATED, negator
from artifacts.vocabulary import INDEX_FROM, vocabulary_subset

NEGATED_SCALE = -0.74  # vaderSentiment's N_SCALAR: "not good" reads as -0.74 times "good"
VALENCE_RANGE = 4.0  # VADER's ratings run from -4 to +4; the table holds them divided by this, in [-1, 1]


class LexiconError(RuntimeError):
    """The lexicon cannot be read."""


@cache
def valences() -> dict[str, float]:
    """VADER's lexicon: each rated single word (lower case) -> its mean rating, from -4 to +4."""
    try:
        text = files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise LexiconError(f"cannot read VADER's lexicon ({error}); install requirements-train.txt "
                           "(vaderSentiment)") from None
    rated = {}
    for line in text.splitlines():
        word, rating, *_ = line.split("\t")
        if " " not in word:  # a handful of phrases ("fed up"): the tokenizer reads words, one id each
            rated[word] = float(rating)
    return rated


def id_valences(word_index: Mapping[str, int], num_words: int, blocks: int,
                rated: Mapping[str, float] | None = None) -> np.ndarray:
    """``(blocks * num_words,)`` float32: the valence of every id a tokenizer rule with ``blocks`` id blocks gives,
    in [-1, 1], 0 for padding, START, OOV, unrated words and the words that open a negation."""
    rated = valences() if rated is None else rated
    plain = np.zeros(num_words, np.float32)
    for word, rank in vocabulary_subset(word_index, num_words).items():
        if word in rated and not negator(word):
            plain[rank + INDEX_FROM] = rated[word] / VALENCE_RANGE
    return np.concatenate([plain * (NEGATED_SCALE if block & NEGATED else 1.0) for block in range(blocks)])
