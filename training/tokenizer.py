"""IMDB review tokenizer: the one implementation used by training and by the service.

It reproduces Keras's text pipeline (``text_to_word_sequence`` with the default filters, the
IMDB word index with ``index_from=3``, ``num_words`` clipping and ``pad_sequences`` defaults):

* lower-case, each character of ``KERAS_FILTERS`` becomes a space, split on whitespace;
* a word of rank r maps to r + 3; unknown words and indices >= num_words map to ``OOV``;
* every sequence starts with ``START``;
* sequences are padded with ``PAD`` and truncated at the front, keeping the last ``max_len``.

This module must stay free of TensorFlow: the service imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

PAD = 0
START = 1
OOV = 2
INDEX_FROM = 3  # Keras reserves indices 0..2, so rank r becomes index r + 3

# keras.preprocessing.text default filters; the apostrophe is deliberately not among them.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TABLE = str.maketrans(KERAS_FILTERS, " " * len(KERAS_FILTERS))
# The same rule on ASCII bytes, two to three times faster: bytes.split() splits on fewer characters
# than str.split(), so the other ASCII characters str.split() splits on become spaces too.
_ASCII_SEPARATORS = KERAS_FILTERS + "\x0b\x0c\r\x1c\x1d\x1e\x1f"
_ASCII_FILTER_TABLE = bytes.maketrans(_ASCII_SEPARATORS.encode(), b" " * len(_ASCII_SEPARATORS))


def text_to_words(text: str) -> list[str]:
    """Split a review into lower-cased words exactly as the models were trained."""
    return text.lower().translate(_FILTER_TABLE).split()


def ascii_text_to_words(text: str) -> list[bytes]:
    """``text_to_words`` for ASCII text, as bytes."""
    return text.encode("ascii").lower().translate(_ASCII_FILTER_TABLE).split()


class Tokenizer:
    """Turns review text into fixed-length int32 index arrays for one vocabulary size."""

    def __init__(self, word_index: Mapping[str, int], num_words: int, max_len: int):
        if num_words <= INDEX_FROM:
            raise ValueError(f"num_words must be greater than {INDEX_FROM}, got {num_words}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.num_words = num_words
        self.max_len = max_len
        # Clip once here so encoding is a single dict lookup per word.
        self._index = {
            word: rank + INDEX_FROM
            for word, rank in word_index.items()
            if rank + INDEX_FROM < num_words
        }
        self._ascii_index = {word.encode(): index for word, index in self._index.items() if word.isascii()}

    def encode(self, text: str) -> list[int]:
        """The unpadded index sequence of one review, starting with START."""
        if text.isascii():  # most reviews: the faster path, with the same result
            words, lookup = ascii_text_to_words(text), self._ascii_index.get
        else:
            words, lookup = text_to_words(text), self._index.get
        return [START, *map(lookup, words, repeat(OOV))]

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        """A ``(n, max_len)`` int32 array, padded and truncated at the front."""
        return pad_sequences([self.encode(text) for text in texts], self.max_len)


def pad_sequences(sequences: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """Keras ``pad_sequences`` defaults: pre-padding with 0 and pre-truncation, as int32."""
    batch = np.zeros((len(sequences), max_len), dtype=np.int32)
    for row, sequence in zip(batch, sequences):
        tail = sequence[-max_len:]
        if tail:
            row[max_len - len(tail):] = tail
    return batch


def vocabulary_subset(word_index: Mapping[str, int], num_words: int) -> dict[str, int]:
    """The words a model with ``num_words`` can see, ordered by rank."""
    kept = [(word, rank) for word, rank in word_index.items() if rank + INDEX_FROM < num_words]
    return dict(sorted(kept, key=lambda item: item[1]))


def load_word_index(path: str | Path) -> dict[str, int]:
    """Read a Keras-format word index (JSON object word -> rank), validating its shape."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"vocabulary file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"vocabulary file {path} must be a non-empty JSON object word -> rank")
    for word, rank in data.items():
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"vocabulary file {path}: rank of {word!r} must be a positive integer")
    return data


def save_word_index(word_index: Mapping[str, int], path: str | Path) -> str:
    """Write a word index deterministically and return its sha256."""
    path = Path(path)
    path.write_text(json.dumps(word_index, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
