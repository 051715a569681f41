"""The ``keras_scopes_spelling`` tokenizer rule: a word outside the vocabulary read as the word it most likely
misspells (``artifacts/spelling.py``), and every other word read as ``keras_scopes`` reads it."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.spelling import LETTERS, MIN_EDIT_LETTERS, Speller, one_edit_apart
from artifacts.tokenizer import KERAS_SCOPES, KERAS_SCOPES_SPELLING, OOV, START, Tokenizer
from artifacts.vocabulary import load_word_index
from tests.conftest import KERAS_WORD_INDEX

NUM_WORDS = 20_000
WORD_INDEX = load_word_index(KERAS_WORD_INDEX)
spelling = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES_SPELLING)
scoping = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES)


def ids(*words: str) -> list[int]:
    return [WORD_INDEX[word] + 3 for word in words]


@pytest.mark.parametrize("typed, meant", [
    ("amazng", "amazing"),  # a letter left out
    ("wonderfull", "wonderful"),  # one too many
    ("brillant", "brilliant"),
    ("terrilbe", "terrible"),  # two swapped
    ("amaaazing", "amazing"),  # a run squeezed to one letter
    ("greeeat", "great"),
])
def test_a_misspelt_review_word_reads_as_the_word_it_misspells(typed, meant):
    assert spelling.encode(f"This film was {typed}.") == [START, *ids("this", "film", "was", meant)]
    assert scoping.encode(f"This film was {typed}.")[-1] == OOV  # the rule without spelling loses it


def test_a_corrected_word_keeps_its_scope():
    assert spelling.encode("not amazng") == [START, *ids("not"), ids("amazing")[0] + NUM_WORDS]
    assert spelling.encode("terible at first, but amazng") == spelling.encode("terrible at first, but amazing")


def test_of_several_words_one_edit_away_the_most_frequent_is_chosen():
    speller = Speller({"cart": 40, "card": 12, "care": 30, "painting": 900, "printing": 5000})
    assert speller.correction("carx") is None  # too short to edit
    assert speller.correction("carxxx") is None  # squeezed to "carx": still too short, and unknown
    assert speller.correction("prnting") == 5000  # only printing is one edit away
    assert speller.correction("paiting") == 900
    assert speller.correction("pointing") == 900  # both are: the smaller id, the more frequent word


def test_short_words_numbers_and_non_letters_are_not_corrected():
    speller = Speller({"great": 50, "atom": 70, "greater": 90})
    assert speller.correction("grat") is None  # 4 letters: one edit away from too many words
    assert speller.correction("gr8ter") is None
    assert speller.correction("grëater") is None
    assert speller.correction("") is None
    assert speller.correction("greaterr") == 90
    assert spelling.encode("atom 1999 zzzqqq") == scoping.encode("atom 1999 zzzqqq")  # "atom": not "tom"


def norvig_edits(word: str) -> set[str]:
    """Norvig's candidates, the reference: one deletion, transposition, replacement or insertion of a letter a-z."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return ({left + right[1:] for left, right in splits if right}
            | {left + right[1] + right[0] + right[2:] for left, right in splits if len(right) > 1}
            | {left + letter + right[1:] for left, right in splits if right for letter in LETTERS}
            | {left + letter + right for left, right in splits for letter in LETTERS})


def norvig_correction(word: str, index: dict[str, int]) -> int | None:
    """The rule as the shipped robust_bag was trained with it: a squeezed run first, then Norvig's edits."""
    squeezed = [re.sub(r"([a-z])\1{2,}", r"\1\1", word), re.sub(r"([a-z])\1{2,}", r"\1", word)]
    for candidate in squeezed:
        if candidate != word and candidate in index:
            return index[candidate]
    if len(squeezed[0]) < MIN_EDIT_LETTERS:
        return None
    found = [index[candidate] for candidate in norvig_edits(squeezed[0]) if candidate in index]
    return min(found, default=None)


SPELLER = Speller({word: rank + 3 for word, rank in WORD_INDEX.items() if rank + 3 < NUM_WORDS})
PLAIN_INDEX = {word: rank + 3 for word, rank in WORD_INDEX.items() if rank + 3 < NUM_WORDS and word.isalpha()
               and word.isascii()}
VOCABULARY_WORDS = sorted(word for word in PLAIN_INDEX if len(word) >= 5)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VOCABULARY_WORDS), st.lists(st.tuples(st.sampled_from(["delete", "insert", "replace", "swap"]),
                                                             st.integers(0, 30), st.sampled_from(LETTERS)),
                                                   min_size=1, max_size=2))
def test_the_deletion_index_finds_the_words_norvig_s_edits_find(word, edits):
    for kind, at, letter in edits:  # one or two random edits of a vocabulary word
        at %= len(word) + (kind == "insert")
        if kind == "delete" and len(word) > 1:
            word = word[:at] + word[at + 1:]
        elif kind == "insert":
            word = word[:at] + letter + word[at:]
        elif kind == "replace":
            word = word[:at] + letter + word[at + 1:]
        elif at + 1 < len(word):
            word = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    if word in PLAIN_INDEX:
        return
    assert SPELLER.correction(word) == norvig_correction(word, PLAIN_INDEX)


def test_one_edit_apart_is_one_substitution_swap_or_deletion():
    assert one_edit_apart("amazing", "amazng") and one_edit_apart("amazng", "amazing")
    assert one_edit_apart("terrible", "terrilbe") and one_edit_apart("great", "groat")
    assert not one_edit_apart("great", "great") and not one_edit_apart("great", "taerg")
    assert not one_edit_apart("abcd", "bcde")  # one deletion each, at either end: two edits
    assert not one_edit_apart("great", "greatest")


def test_a_word_far_longer_than_any_vocabulary_word_is_answered_without_edits_and_not_remembered(monkeypatch):
    import artifacts.spelling

    speller = Speller({"wonderful": 10, "wonderfully": 11})

    def no_edits(word):
        raise AssertionError(f"edits of a {len(word)}-letter word")  # Norvig's: about 5 * 10**6 strings of 10**5

    monkeypatch.setattr(artifacts.spelling, "deletions", no_edits)
    word = "a" + "bc" * 50_000  # 100,000 letters (the longest review), no run to squeeze
    assert speller(word) is None and word not in speller._cache
    assert speller("w" + "o" * 40 + "nderful") == 10  # squeezed, not edited
    monkeypatch.undo()
    assert speller("wonderfullyx") == 11  # 12 letters: the longest word plus one, still edited


def test_the_speller_remembers_a_bounded_number_of_words(monkeypatch):
    speller = Speller({"wonderful": 10, "amazing": 20})
    monkeypatch.setattr(Speller, "CACHE_WORDS", 3)
    assert [speller(word) for word in ("wonderfull", "amazng", "xyzzyq", "amazzing")] == [10, 20, None, 20]
    assert len(speller._cache) <= 3
    assert MIN_EDIT_LETTERS == 6
