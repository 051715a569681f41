"""IMDB review tokenizer: the one implementation used by training and by the service.

It reproduces Keras's text pipeline (``text_to_word_sequence`` with the default filters, the
IMDB word index with ``index_from=3``, ``num_words`` clipping and ``pad_sequences`` defaults):

* lower-case, each character of ``KERAS_FILTERS`` becomes a space, split on whitespace;
* a word of rank r maps to r + 3; unknown words and indices >= num_words map to ``OOV``;
* every sequence starts with ``START``;
* sequences are padded with ``PAD`` and truncated at the front, keeping the last ``max_len``.

``words_with_offsets`` gives the same words with where each stands in the text (for ``/explain``).

Models trained after the robustness work may read with the rule ``keras_negation`` (``RULES``): the same words,
and a known word inside a negation's scope gets a second id, ``its id + num_words``, so "not good" reads
``not`` and a negated ``good`` that the model can learn apart from ``good``. A scope opens after a negation
word (``NEGATORS``: "not", "never", "no", any word ending in "n't", the apostrophe-less "didnt" ...) and closes at
the end of its clause: the next of ``.,!?;:`` in the text, or a contrast word (``SCOPE_ENDERS``: "but",
"however" ...). The rule ``keras_scopes`` adds contrast: a known word that a contrast outweighs gets
``its id + 2 * num_words`` (``+ 3 * num_words`` when also negated): the words before "but" (``CONTRAST_AFTER``) in
its sentence, as in "slow at first, but the ending is wonderful", and the words after "although"
(``CONTRAST_BEFORE``) in its clause, as in "although the cast is great, the film is dull". The rule
``keras_scopes_spelling`` is ``keras_scopes`` with a word outside the vocabulary read as the vocabulary word it most
likely misspells (``artifacts/spelling.py``: "amazng" reads "amazing"). The rule ``keras_scopes_spelling_across`` is
``keras_scopes_spelling`` with a contrast that opens a sentence outweighing the sentence before it, as in "The plot
was dull; however, the ending is wonderful" or "The cast is great. But the film is dull" (the other rules let such a
contrast outweigh nothing). The rule ``keras_scopes_spelling_focus`` is ``keras_scopes_spelling`` with a negation
read on its focus: its scope runs over the words that cannot be what it negates (``FOCUS_SKIP``: articles and
determiners, pronouns, forms of "be" and "have", degree words) up to and including the first word that can, and on
only through an "or" ("not funny or clever"), so "I have never seen such a dull film" reads a plain "dull", and
"never dull" and "nothing boring about it" a negated one. In IMDB's training reviews a review with a negated "dull"
is positive 73 times in 100 read this way, against 37 with the clause as the scope. The rule
``keras_scopes_spelling_focus_cueless`` also reads the word that opens a negation as padding (``PAD``), so that a
negation is read on its focus alone. The rule ``keras_scopes_spelling_focus_across`` reads negations on their focus
and contrasts across sentences, as the two rules before it do. The rule ``keras_scopes_spelling_focus_across_cue``
also reads the word that opens a negation as a word a contrast outweighs (``its id + 2 * num_words``), which a bag
with a conceded weight reads as the word itself at that fraction of its weight: "nothing" in "nothing boring about
it" says less, and the negated "boring" more. The course models keep the Keras rule exactly.

Free of TensorFlow: the service imports it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Literal, get_args

import numpy as np

from artifacts.spelling import Speller
from artifacts.vocabulary import INDEX_FROM

PAD = 0
START = 1
OOV = 2

# keras.preprocessing.text default filters; the apostrophe is deliberately not among them.
KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_FILTER_TABLE = str.maketrans(KERAS_FILTERS, " " * len(KERAS_FILTERS))
# The filters are ASCII, and in UTF-8 an ASCII byte only ever stands for itself, so translating the
# UTF-8 bytes is the same rule as translating the str, and far faster than str.translate on non-ASCII text.
_UTF8_FILTER_TABLE = bytes.maketrans(KERAS_FILTERS.encode(), b" " * len(KERAS_FILTERS))
# For ASCII text the whole rule runs on bytes. bytes.split() splits on fewer characters than str.split(),
# so the other ASCII characters str.split() splits on become spaces too.
_ASCII_SEPARATORS = KERAS_FILTERS + "\x0b\x0c\r\x1c\x1d\x1e\x1f"
_ASCII_FILTER_TABLE = bytes.maketrans(_ASCII_SEPARATORS.encode(), b" " * len(_ASCII_SEPARATORS))


KERAS = "keras"
KERAS_NEGATION = "keras_negation"
KERAS_SCOPES = "keras_scopes"
KERAS_SCOPES_SPELLING = "keras_scopes_spelling"
KERAS_SCOPES_SPELLING_ACROSS = "keras_scopes_spelling_across"
KERAS_SCOPES_SPELLING_FOCUS = "keras_scopes_spelling_focus"
KERAS_SCOPES_SPELLING_FOCUS_CUELESS = "keras_scopes_spelling_focus_cueless"
KERAS_SCOPES_SPELLING_FOCUS_ACROSS = "keras_scopes_spelling_focus_across"
KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE = "keras_scopes_spelling_focus_across_cue"
# The rules, as a type for the training configuration and the metadata schema, which name a model's rule.
TokenizerRule = Literal["keras", "keras_negation", "keras_scopes", "keras_scopes_spelling",
                        "keras_scopes_spelling_across", "keras_scopes_spelling_focus",
                        "keras_scopes_spelling_focus_cueless", "keras_scopes_spelling_focus_across",
                        "keras_scopes_spelling_focus_across_cue"]
RULES: tuple[str, ...] = get_args(TokenizerRule)
# How many ids each known word can read as.
ID_BLOCKS = {KERAS: 1, KERAS_NEGATION: 2, KERAS_SCOPES: 4, KERAS_SCOPES_SPELLING: 4, KERAS_SCOPES_SPELLING_ACROSS: 4,
             KERAS_SCOPES_SPELLING_FOCUS: 4, KERAS_SCOPES_SPELLING_FOCUS_CUELESS: 4,
             KERAS_SCOPES_SPELLING_FOCUS_ACROSS: 4, KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE: 4}
SPELLING_RULES = frozenset({KERAS_SCOPES_SPELLING, KERAS_SCOPES_SPELLING_ACROSS, KERAS_SCOPES_SPELLING_FOCUS,
                            KERAS_SCOPES_SPELLING_FOCUS_CUELESS, KERAS_SCOPES_SPELLING_FOCUS_ACROSS,
                            KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE})
FOCUS_RULES = frozenset({KERAS_SCOPES_SPELLING_FOCUS, KERAS_SCOPES_SPELLING_FOCUS_CUELESS,
                         KERAS_SCOPES_SPELLING_FOCUS_ACROSS, KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE})
ACROSS_RULES = frozenset({KERAS_SCOPES_SPELLING_ACROSS, KERAS_SCOPES_SPELLING_FOCUS_ACROSS,
                          KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE})
# Words that open a negation scope (besides every word ending in "n't"), with the forms people type without the
# apostrophe. "cant" and "wont" are also rare words (a slope, a habit); as typed in reviews they are negations.
NEGATORS = frozenset({
    "not", "no", "never", "nothing", "nobody", "none", "nowhere", "neither", "nor", "cannot", "without",
    "hardly", "barely", "dont", "didnt", "doesnt", "isnt", "wasnt", "arent", "werent", "cant", "wont", "couldnt",
    "wouldnt", "shouldnt", "havent", "hasnt", "hadnt", "aint",
})
SCOPE_ENDERS = frozenset({"but", "however", "although", "though", "yet", "except"})
# Words whose sentence so far the rest outweighs, and words whose own clause the rest of the sentence outweighs.
CONTRAST_AFTER = frozenset({"but", "however", "yet", "nevertheless", "nonetheless"})
CONTRAST_BEFORE = frozenset({"although", "though", "despite", "whereas"})
# With a negation read on its focus (keras_scopes_spelling_focus): the words that cannot be what a negation negates,
# which its scope runs over to reach the word that can. Articles and determiners ("not a single", "not one"),
# pronouns and forms of "be" and "have" ("wasn't it", "haven't been"), degree words ("not very", "never too", "not
# at all", "not the least bit") and "even" and "ever". Written from English grammar, not from any model's mistakes.
FOCUS_SKIP = frozenset({
    "a", "an", "the", "any", "this", "that", "these", "those", "such", "one", "single", "some", "my", "his", "her",
    "its", "our", "your", "their", "i", "you", "he", "she", "it", "we", "they", "there", "be", "been", "being", "is",
    "was", "are", "were", "am", "have", "has", "had", "do", "does", "did", "very", "too", "so", "really", "quite",
    "all", "at", "least", "bit", "particularly", "especially", "overly", "remotely", "terribly", "entirely",
    "completely", "totally", "exactly", "just", "as", "much", "more", "most", "even", "ever",
})
FOCUS_GOES_ON = "or"  # "not funny or clever": the scope reaches the next focus


def text_to_words(text: str) -> list[str]:
    """Split a review into lower-cased words exactly as the models were trained (the reference rule;
    ``Tokenizer`` runs faster equivalents, tested against it)."""
    return text.lower().translate(_FILTER_TABLE).split()


_PUNCTUATION = frozenset(".,!?;:")  # "," ends a clause, the others a sentence
# The other filters blanked out and the six marks spaced out, one split finds the words of the Keras rule (runs of
# characters that are neither whitespace, as str.split() has it, nor a filter) and the marks between them: what the
# regular expression "[.,!?;:]|[^\\s<filters>]+" finds on the lower-cased text, in a third of its time (33 against
# 99 µs per IMDB test review, Intel Xeon, 2026-12-01; tests/test_negation.py holds the two equal). As for
# _UTF8_FILTER_TABLE, the filters and marks are ASCII, so the UTF-8 bytes can be blanked and spaced.
_BLANKED = "".join(char for char in KERAS_FILTERS if char not in _PUNCTUATION)
_UTF8_BLANK_FILTERS = bytes.maketrans(_BLANKED.encode(), b" " * len(_BLANKED))
_SPACED_MARKS = [(mark.encode(), f" {mark} ".encode()) for mark in sorted(_PUNCTUATION)]


def words_and_marks(text: str) -> list[str]:
    """The words of ``text_to_words(text)`` with, between them, the punctuation that ends clauses and sentences."""
    spaced = text.lower().encode("utf-8", "surrogatepass").translate(_UTF8_BLANK_FILTERS)
    for mark, spaced_mark in _SPACED_MARKS:
        if mark in spaced:
            spaced = spaced.replace(mark, spaced_mark)
    return spaced.decode("utf-8", "surrogatepass").split()


NEGATED, OUTWEIGHED = 1, 2  # the bits of a word's scope code
CUE = 4  # with focus, the bit of a word that opens a negation scope
PARAGRAPH_BREAK = "br"  # the word the Keras rule reads in IMDB's "<br />"
_SCOPE_WORDS = NEGATORS | SCOPE_ENDERS | CONTRAST_AFTER | CONTRAST_BEFORE | _PUNCTUATION
_SCOPE_WORDS_ACROSS = _SCOPE_WORDS | {PARAGRAPH_BREAK}  # across sentences, a paragraph break matters too
_SCOPE_WORDS_FOCUS = _SCOPE_WORDS | {FOCUS_GOES_ON}
# The words scope_codes stops at, by (across, focus).
_SCOPE_WORDS_READ = {(False, False): _SCOPE_WORDS, (True, False): _SCOPE_WORDS_ACROSS,
                     (False, True): _SCOPE_WORDS_FOCUS, (True, True): _SCOPE_WORDS_ACROSS | _SCOPE_WORDS_FOCUS}


def negator(word: str) -> bool:
    """Whether ``word`` (lower-cased, as ``text_to_words`` gives it) opens a negation scope."""
    return word in NEGATORS or word.endswith("n't")


def scope_codes(text: str, across: bool = False, focus: bool = False) -> list[int]:
    """For each word of ``text_to_words(text)``, its scopes (see the module's docstring): ``NEGATED`` when it
    stands after a negation in its clause (up to a contrast word), plus ``OUTWEIGHED`` when a contrast in its
    sentence outweighs it (the words before a ``CONTRAST_AFTER`` word, back to the sentence's start or the
    previous contrast, and the words after a ``CONTRAST_BEFORE`` word, to the end of its clause). With
    ``across``, a ``CONTRAST_AFTER`` word that opens a sentence (after nothing but paragraph breaks, the "br" of
    IMDB's "<br />") outweighs the sentence before it (back to its start or its last contrast). With ``focus``, a
    negation's scope ends sooner: after the first word not in ``FOCUS_SKIP``, going on only through an "or"; and
    the word that opens a negation scope has the bit ``CUE``. The two are independent: with both, each reads as
    it does alone."""
    codes: list[int] = []
    append = codes.append
    code = 0  # the current word's: NEGATED * negated + OUTWEIGHED * conceding
    since_contrast = 0  # where the words a CONTRAST_AFTER word outweighs begin
    sentence_start = previous_since = 0  # where this sentence begins; since_contrast when the one before ended
    focus_read = -1  # with focus: how many words there were when a negation's scope last ended at its focus
    scope_words = _SCOPE_WORDS_READ[bool(across), bool(focus)]
    for token in words_and_marks(text):
        if token not in scope_words and token[-3:] != "n't":  # most words: no scope begins or ends
            append(code)
            if focus and code & NEGATED and token not in FOCUS_SKIP:  # the negation's focus: its scope ends
                code &= ~NEGATED
                focus_read = len(codes)
            continue
        if token == FOCUS_GOES_ON:  # only with focus
            append(code)
            if focus_read == len(codes) - 1:  # right after a focus: the scope goes on to the next one
                code |= NEGATED
            continue
        if token == PARAGRAPH_BREAK:  # only across sentences
            if len(codes) == sentence_start:
                sentence_start += 1  # IMDB's "Dull.<br /><br />But ...": the "But" still opens its sentence
            append(code)
            if focus and code & NEGATED:  # as any word not in FOCUS_SKIP, so that focus reads as it does alone
                code &= ~NEGATED
                focus_read = len(codes)
            continue
        if token in _PUNCTUATION:
            code, focus_read = 0, -1
            if token != ",":
                if len(codes) > sentence_start:  # a sentence with words in it ends
                    previous_since, sentence_start = since_contrast, len(codes)
                since_contrast = len(codes)
            continue
        if token in SCOPE_ENDERS:
            code &= ~NEGATED
        if token in CONTRAST_AFTER:
            start = previous_since if across and len(codes) == sentence_start else since_contrast
            codes[start:] = [earlier | OUTWEIGHED for earlier in codes[start:]]
            since_contrast, code = len(codes) + 1, code & ~OUTWEIGHED
        append(code)
        if negator(token):
            code |= NEGATED
            if focus:
                codes[-1] |= CUE
        if token in CONTRAST_BEFORE:
            code |= OUTWEIGHED
    return codes


def negation_scopes(text: str, focus: bool = False) -> list[bool]:
    """For each word of ``text_to_words(text)``, whether it stands inside a negation's scope (with ``focus``, as
    the focus rules read it)."""
    return [bool(code & NEGATED) for code in scope_codes(text, focus=focus)]


def contrast_scopes(text: str) -> list[bool]:
    """For each word of ``text_to_words(text)``, whether a contrast in its sentence outweighs it."""
    return [bool(code & OUTWEIGHED) for code in scope_codes(text)]


# A run of the characters str.split() does not split on: re's \s is str.isspace(), which is what str.split()
# splits on, for every code point (checked over all of Unicode when this was written; tests/test_offsets.py
# checks the words against text_to_words on arbitrary Unicode).
_WORD_RUN = re.compile(r"\S+")


def words_with_offsets(text: str) -> list[tuple[str, int, int]]:
    """``text_to_words(text)``, each word with the ``start`` and ``end`` offsets of the characters of ``text``
    it came from, so that ``text[start:end].lower() == word``.

    The words are those of the reference rule, found on the lower-cased and filtered whole text. Lower-casing
    can lengthen a character ('İ', U+0130, becomes 'i' + U+0307), so positions in the lowered text are mapped
    back through each character's lowered length. One corner: ``str.lower()`` writes a capital sigma 'Σ' as
    final 'ς' or medial 'σ' depending on the letters around it, which may lie outside the word (``"ΑΣ.Β"``
    gives the word ``"ασ"``, while ``"ΑΣ".lower()`` is ``"ας"``). There ``text[start:end].lower()`` can
    differ from the word in that one letter; the word is always what the model read.
    """
    lowered = text.lower()
    filtered = lowered.translate(_FILTER_TABLE)
    if len(lowered) == len(text):  # every character lowered to one: positions are the same
        return [(match.group(), match.start(), match.end()) for match in _WORD_RUN.finditer(filtered)]
    # ends[i]: where character i's lowered form ends in ``lowered``; a lowered position p came from
    # character bisect_right(ends, p).
    ends = list(accumulate(len(char.lower()) for char in text))
    return [(match.group(), bisect_right(ends, match.start()), bisect_right(ends, match.end() - 1) + 1)
            for match in _WORD_RUN.finditer(filtered)]


class Tokenizer:
    """Turns review text into fixed-length int32 index arrays for one vocabulary size."""

    def __init__(self, word_index: Mapping[str, int], num_words: int, max_len: int, rule: str = KERAS):
        if rule not in RULES:
            raise ValueError(f"unknown tokenizer rule {rule!r}; known: {', '.join(RULES)}")
        if num_words <= INDEX_FROM:
            raise ValueError(f"num_words must be greater than {INDEX_FROM}, got {num_words}")
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}")
        self.num_words = num_words
        self.max_len = max_len
        self.rule = rule
        # The ids the model's input can hold: a known word in a scope is shifted by a multiple of num_words.
        self.id_count = num_words * ID_BLOCKS[rule]
        # Clip once here so encoding is a single dict lookup per word.
        self._index = {
            word: rank + INDEX_FROM
            for word, rank in word_index.items()
            if rank + INDEX_FROM < num_words
        }
        self._ascii_index = {word.encode(): index for word, index in self._index.items() if word.isascii()}
        self._speller = Speller(self._index) if rule in SPELLING_RULES else None

    @property
    def spells(self) -> bool:
        """Whether unknown words are read as the words they misspell (slower the first time a word is seen)."""
        return self._speller is not None

    def _ids(self, text: str, last: int = -1) -> tuple[np.ndarray, bool]:
        """The int32 ids of ``text_to_words(text)``, or of its last ``last`` words, and whether words before those
        were left out."""
        split_at = -1 if self.rule != KERAS else last  # scopes need every word
        if text.isascii():  # most reviews
            words = text.encode("ascii").lower().translate(_ASCII_FILTER_TABLE).rsplit(maxsplit=split_at)
            lookup = self._ascii_index.get
        else:
            utf8 = text.lower().encode("utf-8", "surrogatepass").translate(_UTF8_FILTER_TABLE)
            words, lookup = utf8.decode("utf-8", "surrogatepass").rsplit(maxsplit=split_at), self._index.get
        if self.rule != KERAS:
            return self._scoped_ids(text, words, lookup, last)
        cut = 0 <= last < len(words)
        if cut:  # rsplit() left the words before the last ones in one piece
            del words[0]
        return np.fromiter(map(lookup, words, repeat(OOV)), np.int32, len(words)), cut

    def _scoped_ids(self, text: str, words: list, lookup: Callable, last: int) -> tuple[np.ndarray, bool]:
        """``_ids`` for the rules with scopes (``words`` came from a full split): the last ``last`` words looked
        up (and spelt), a known word in a scope shifted. The scopes need the whole text (a scope can open before
        the last ``last`` words), so the words are cut here, and only the kept ones are looked up. All of them in
        one ``map``, the speller asked only where the vocabulary has no answer, and the shift made on arrays: 88
        against 144 µs per IMDB test review for a Python call per word (Intel Xeon, 2026-12-01)."""
        kept = NEGATED if self.rule == KERAS_NEGATION else NEGATED | OUTWEIGHED
        codes = scope_codes(text, across=self.rule in ACROSS_RULES, focus=self.rule in FOCUS_RULES)
        cut = 0 <= last < len(words)
        if cut:
            words, codes = words[-last:], codes[-last:]
        found = list(map(lookup, words))  # None: not in the vocabulary
        if None in found:
            speller = self._speller
            for position in [position for position, index in enumerate(found) if index is None]:
                word = words[position]
                spelt = None if speller is None else speller(word.decode("ascii") if isinstance(word, bytes) else word)
                found[position] = OOV if spelt is None else spelt
        ids = np.array(found, dtype=np.int32)
        scopes = np.array(codes, dtype=np.int32)
        if self.rule == KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE:
            # The word that opens a negation reads as a word a contrast outweighs: what the negation says is read
            # mostly on its focus, and the conceded weight reads the cue ("nothing" in "nothing boring") at a fraction.
            scopes[scopes & CUE != 0] |= OUTWEIGHED
        ids = np.where(ids > OOV, ids + self.num_words * (scopes & kept), ids)
        if self.rule == KERAS_SCOPES_SPELLING_FOCUS_CUELESS:
            # The word that opens a negation reads as padding, which the bag models leave out: what a negation says
            # is read on its focus alone ("nothing boring" as a negated "boring"), not on a row of "nothing" of its own.
            ids[scopes & CUE != 0] = PAD
        return ids, cut

    def encode(self, text: str) -> list[int]:
        """The unpadded index sequence of one review, starting with START."""
        ids, _ = self._ids(text)
        return [START, *ids.tolist()]

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(n, max_len)`` int32 array of ``[START, *word indices]`` per text, padded with PAD and
        truncated at the front, keeping the last ``max_len`` (Keras ``pad_sequences`` defaults)."""
        return self.encode_reviews(texts).tokens

    def encode_reviews(self, texts: Sequence[str]) -> EncodedBatch:
        """``encode_batch(texts)`` with, per text, whether words were cut off to fit ``max_len``."""
        batch = np.zeros((len(texts), self.max_len), dtype=np.int32)
        truncated = np.zeros(len(texts), dtype=bool)
        words_read = np.zeros(len(texts), dtype=np.int64)
        known = np.zeros(len(texts), dtype=np.int64)
        for position, (row, text) in enumerate(zip(batch, texts, strict=True)):
            ids, truncated[position] = self._ids(text, last=self.max_len)  # the rest would be cut
            words_read[position] = kept = len(ids)
            if kept < self.max_len:
                row[-kept - 1] = START
            if kept:
                row[-kept:] = ids
                known[position] = np.count_nonzero(ids > OOV)  # about 1 µs; with axis=1 on the batch, 4 µs
        return EncodedBatch(batch, truncated, words_read, known)


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """Token ids for a batch of reviews, and what a caller should know about how they were read."""

    tokens: np.ndarray  # (n, max_len) int32
    truncated: np.ndarray  # (n,) bool: words before the last max_len were left out
    # Counted once when encoding (every model that shares the tokenizer reads them); None: from ``tokens``.
    words: np.ndarray | None = None  # (n,) the words in the model's input (padding and START are not words)
    known: np.ndarray | None = None  # (n,) of those, the words in the model's vocabulary

    def __len__(self) -> int:
        return len(self.tokens)

    def words_read(self) -> np.ndarray:
        """Per review, the words in the model's input (known or not; padding and START are not words)."""
        return np.count_nonzero(self.tokens >= OOV, axis=1) if self.words is None else self.words

    def known_words(self) -> np.ndarray:
        """Per review, the words of the input that are in the model's vocabulary."""
        return np.count_nonzero(self.tokens > OOV, axis=1) if self.known is None else self.known

    def readings(self) -> list[tuple[int, int, bool]]:
        """Per review, as Python values: (words read, known words, truncated)."""
        return list(zip(self.words_read().tolist(), self.known_words().tolist(), self.truncated.tolist(),
                        strict=True))
