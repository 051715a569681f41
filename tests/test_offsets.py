"""words_with_offsets: the tokenizer's words with where each stands in the review (what /explain reports)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.tokenizer import KERAS_FILTERS, text_to_words, words_with_offsets

CAPITAL_SIGMA, MEDIAL_SIGMA, FINAL_SIGMA = "Σ", "σ", "ς"

text_with_traps = st.one_of(
    st.text(),  # arbitrary Unicode, lone surrogates too
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"])),  # space, control, combining
    st.lists(st.sampled_from(["İ", "İİ", "Σ", "ΑΣ", "ΑΣ.", "Σ'", "ΌΣΟΣ", "ß", "ǅ", "\u212a", "ﬁ", "Café",
                              "\u0345", "\u1e9e", "a-b", "<br />", "x", "'", ".", "\x1c", "\u0085", "\u00a0",
                              "\u2028", "\u3000", "😀", "\ud800"]),
             max_size=40).map("".join),
    st.lists(st.sampled_from(["İ", "Σ", "ΑΣ", "word", " ", "\t", "!", ".", "'", "\u0307"]), max_size=40).map("".join),
)


def sigma_corner(original: str, lowered: str, word: str) -> bool:
    """``original.lower()`` differs from ``word`` only where a capital sigma was written final in one and
    medial in the other (its form depends on letters that may lie outside the word)."""
    return len(lowered) == len(word) and all(
        a == b or (a in (MEDIAL_SIGMA, FINAL_SIGMA) and b in (MEDIAL_SIGMA, FINAL_SIGMA))
        for a, b in zip(lowered, word, strict=True)) and CAPITAL_SIGMA in original


@given(text_with_traps)
@settings(max_examples=2_000, deadline=None)
def test_the_words_are_exactly_the_tokenizers_and_their_offsets_point_at_them(text):
    found = words_with_offsets(text)
    assert [word for word, _, _ in found] == text_to_words(text)
    previous_end = 0
    for word, start, end in found:
        assert previous_end <= start < end <= len(text)
        original = text[start:end]
        assert original.lower() == word or sigma_corner(original, original.lower(), word), (word, original)
        previous_end = end


@given(text_with_traps)
@settings(max_examples=500, deadline=None)
def test_between_the_words_there_is_only_whitespace_and_filters(text):
    separators = set(KERAS_FILTERS)
    previous_end = 0
    for _, start, end in [*words_with_offsets(text), (None, len(text), len(text))]:
        assert all(char.isspace() or char in separators for char in text[previous_end:start])
        previous_end = end


@pytest.mark.parametrize(("text", "expected"), [
    ("Great movie!", [("great", 0, 5), ("movie", 6, 11)]),
    ("Don't stop: it's O'Brien's<br />best.", [("don't", 0, 5), ("stop", 6, 10), ("it's", 12, 16),
                                               ("o'brien's", 17, 26), ("br", 27, 29), ("best", 32, 36)]),
    ("  \u00a0 ", []),
    ("İstanbul, İzmir", [("i̇stanbul", 0, 8), ("i̇zmir", 10, 15)]),  # 'İ' lowers to two characters
    ("Café «film» 映画", [("café", 0, 4), ("«film»", 5, 11), ("映画", 12, 14)]),
])
def test_offsets_of_plain_and_lengthening_text(text, expected):
    assert words_with_offsets(text) == expected
    for word, start, end in expected:
        assert text[start:end].lower() == word


def test_a_capital_sigma_is_read_as_the_whole_text_reads_it_even_when_its_form_depends_on_other_words():
    # str.lower() writes 'Σ' final ('ς') at the end of a word and medial ('σ') before a letter, looking past
    # case-ignorable characters such as '.', which the tokenizer then turns into a space.
    text = "ΑΣ.Β ΟΔΟΣ"
    assert text_to_words(text) == ["ασ", "β", "οδος"]  # the first sigma is medial: a letter follows the '.'
    found = words_with_offsets(text)
    assert found == [("ασ", 0, 2), ("β", 3, 4), ("οδος", 5, 9)]
    assert text[0:2].lower() == "ας" != found[0][0]  # the documented corner: the token alone reads differently
    assert text[5:9].lower() == "οδος" == found[2][0]
