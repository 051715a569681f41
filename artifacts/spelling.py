"""Reading a misspelt word as the word it misspells: the spelling tokenizer rules (``keras_scopes_spelling`` and
``keras_scopes_spelling_across``).

People type "amazng", "brillant", "wonderfull" and "greeeat"; the Keras rule reads each as OOV, so the one word that
says what the reviewer thought is lost. Here a word outside the model's vocabulary is read as the most frequent
vocabulary word one edit away (Norvig's corrector: a letter deleted, inserted, replaced, or two neighbours swapped),
after squeezing a run of three or more of one letter to two letters, or else to one ("greeeat" reads "great"). Only
words of plain letters are corrected, and by an edit only words of ``MIN_EDIT_LETTERS`` letters or more: on the IMDB
training reviews, one edit from a 4- or 5-letter word was as often another real word ("atom" read "tom", "sired"
"tired") as a typo, while from 6 letters on most corrections were typos or inflections ("unusal", "opinon",
"untill", "violins"); a few still read a rare word as a frequent one ("printing" as "painting", "tinker" as
"stinker"). Of the 151,050 out-of-vocabulary words in the 25,000 training reviews (a 20,000-word vocabulary), one
edit at any length read 48,744 as a vocabulary word; with the limit, 31,938 (21 %).

The vocabulary's order is its frequency order (the Keras IMDB word index ranks words by count), so "most frequent"
is the smallest id. The candidates are not generated Norvig's way (about 54 strings per letter of the word: 80 µs
per word here, and quadratic in its length, so one 20,000-letter word took seconds) but found through the
vocabulary's deletions (SymSpell's idea): a plain vocabulary word one edit from ``w`` is ``w`` with a letter
deleted, or has a deletion equal to ``w`` or to one of ``w``'s deletions (checked to be one edit away): about
2 x (len(w) + 1) dict look-ups. The same words as Norvig's edits of letters a-z (tested against them). A word
longer than the longest vocabulary word plus one has no neighbour and costs one regular expression. Free of
TensorFlow: the service imports it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

MIN_EDIT_LETTERS = 6
LETTERS = string.ascii_lowercase
_PLAIN_WORD = re.compile(f"[{LETTERS}]+")
_LONG_RUN = re.compile(r"([a-z])\1{2,}")  # a letter three or more times in a row


def deletions(word: str) -> list[str]:
    """``word`` with one of its characters left out, for each character."""
    return [word[:i] + word[i + 1:] for i in range(len(word))]


def one_edit_apart(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by one substitution or one swap of neighbours (same length), or one deletion."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) != len(b):
        short, long = sorted((a, b), key=len)
        return any(long[:i] + long[i + 1:] == short for i in range(len(long)))
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(differ) == 1 or (len(differ) == 2 and differ[1] == differ[0] + 1
                                 and a[differ[0]] == b[differ[1]] and a[differ[1]] == b[differ[0]])


class Speller:
    """The vocabulary word an unknown word most likely misspells, by id (None: none), for one vocabulary (word ->
    id, a smaller id a more frequent word). Remembered per word: reviews repeat their misspellings; the memory is
    bounded, since any text can be sent."""

    CACHE_WORDS = 65_536

    def __init__(self, index: Mapping[str, int]):
        self._index = index
        plain = {word: i for word, i in index.items() if _PLAIN_WORD.fullmatch(word)}
        self._longest = max(map(len, plain), default=0)
        # deletion -> the plain vocabulary words it comes from (those of MIN_EDIT_LETTERS - 1 letters or more: an
        # edited word has MIN_EDIT_LETTERS or more, and a neighbour at most one fewer)
        self._deleted: dict[str, list[tuple[str, int]]] = {}
        for word, i in plain.items():
            if len(word) >= MIN_EDIT_LETTERS - 1:
                for deleted in deletions(word):
                    self._deleted.setdefault(deleted, []).append((word, i))
        self._cache: dict[str, int | None] = {}

    def correction(self, word: str) -> int | None:
        """The id of the vocabulary word ``word`` most likely misspells, or None: ``word`` is not plain letters, or
        no vocabulary word is close."""
        if not _PLAIN_WORD.fullmatch(word):
            return None
        squeezed = [_LONG_RUN.sub(r"\1\1", word), _LONG_RUN.sub(r"\1", word)]
        for candidate in squeezed:
            if candidate != word and (found := self._index.get(candidate)) is not None:
                return found
        edited = squeezed[0]
        if not MIN_EDIT_LETTERS <= len(edited) <= self._longest + 1:
            return None
        shortened = deletions(edited)
        found = [self._index.get(deleted) for deleted in shortened]  # a letter too many
        found += [i for _, i in self._deleted.get(edited, ())]  # a letter left out
        found += [i for deleted in shortened for word, i in self._deleted.get(deleted, ())
                  if one_edit_apart(edited, word)]  # a letter replaced, or two swapped
        return min(filter(None, found), default=None)

    def __call__(self, word: str) -> int | None:
        try:
            return self._cache[word]
        except KeyError:
            pass
        found = self.correction(word)
        if len(word) <= self._longest + 1:  # a longer word is quickly answered and would only fill the memory
            if len(self._cache) >= self.CACHE_WORDS:
                self._cache.clear()
            self._cache[word] = found
        return found
