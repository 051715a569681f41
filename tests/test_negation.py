"""The tokenizer rules with scopes: ``keras_negation`` (a negated known word shifted by num_words) and
``keras_scopes`` (also a word a contrast outweighs, shifted by 2 * num_words): the same words as Keras's rule;
and the scopes of ``keras_scopes_spelling_across`` (a contrast that opens a sentence outweighs the one before)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.tokenizer import (
    KERAS,
    KERAS_NEGATION,
    KERAS_SCOPES,
    KERAS_SCOPES_SPELLING,
    KERAS_SCOPES_SPELLING_ACROSS,
    NEGATED,
    OOV,
    OUTWEIGHED,
    START,
    Tokenizer,
    contrast_scopes,
    negation_scopes,
    scope_codes,
    text_to_words,
)
from artifacts.vocabulary import load_word_index
from tests.conftest import KERAS_WORD_INDEX

NUM_WORDS = 10_000
WORD_INDEX = load_word_index(KERAS_WORD_INDEX)
negating = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_NEGATION)
keras_rule = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS)
scoping = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES)


def test_a_word_after_a_negation_gets_its_id_plus_num_words():
    plain = keras_rule.encode("not good")
    assert negating.encode("not good") == [START, plain[1], plain[2] + NUM_WORDS]
    assert negating.encode("good") == keras_rule.encode("good")


def test_the_scope_ends_at_clause_punctuation_and_at_contrast_words():
    assert negation_scopes("I didn't like it, the acting was great") == [False, False, True, True] + [False] * 4
    assert negation_scopes("not funny but clever") == [False, True, False, False]
    assert negation_scopes("never good; great!") == [False, True, False]


def test_apostrophe_less_negations_open_a_scope_too():
    assert negation_scopes("didnt like it") == [False, True, True]
    assert negation_scopes("Nothing works") == [False, True]


def test_a_contrast_outweighs_the_words_before_but_in_its_sentence():
    assert contrast_scopes("The start was slow, but the ending was wonderful. Fine.") == [True] * 4 + [False] * 6
    assert contrast_scopes("good but bad but ok") == [True, False, True, False, False]


def test_a_concession_outweighs_the_rest_of_its_clause():
    assert contrast_scopes("Although the cast is great, the film is dull") == [False] + [True] * 4 + [False] * 4
    assert contrast_scopes("It was good, though.") == [False] * 4


def test_across_sentences_a_contrast_that_opens_a_sentence_outweighs_the_sentence_before():
    for text in ("The plot was dull; however, the ending was good.", "The plot was dull. But the ending was good!"):
        assert contrast_scopes(text) == [False] * 9  # the rules before: it outweighs nothing
        assert [bool(code & OUTWEIGHED) for code in scope_codes(text, across=True)] == [True] * 4 + [False] * 5


def test_across_sentences_only_the_words_after_the_last_contrast_before_are_outweighed():
    text = "Good, but slow. However, moving."
    assert [code & OUTWEIGHED for code in scope_codes(text, across=True)] == [OUTWEIGHED, 0, OUTWEIGHED, 0, 0]
    assert scope_codes("Dull!!! Yet great", across=True) == scope_codes("Dull yet great")  # "!!!" ends one sentence
    paragraphs = "Dull.<br /><br />But great"  # the words: dull br br but great
    assert [code & OUTWEIGHED for code in scope_codes(paragraphs, across=True)] == [OUTWEIGHED] * 3 + [0, 0]


def test_across_sentences_a_contrast_inside_a_sentence_reads_as_before():
    text = "It is long. The start was slow, but the ending was wonderful."
    assert scope_codes(text, across=True) == scope_codes(text)


def test_the_across_rule_reads_as_keras_scopes_spelling_but_for_contrasts_that_open_a_sentence():
    across = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES_SPELLING_ACROSS)
    spelling = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES_SPELLING)
    assert across.spells and across.id_count == 4 * NUM_WORDS
    assert across.encode("The film was amazng, but long.") == spelling.encode("The film was amazng, but long.")
    plain = keras_rule.encode("great. but bad")
    assert across.encode("great. but bad") == [START, plain[1] + 2 * NUM_WORDS, plain[2], plain[3]]


def test_the_scopes_rule_shifts_by_two_blocks_for_a_contrast_and_three_when_also_negated():
    plain = keras_rule.encode("not good but great")
    assert scoping.encode("not good but great") == [START, plain[1] + 2 * NUM_WORDS, plain[2] + 3 * NUM_WORDS,
                                                    plain[3], plain[4]]
    assert scoping.id_count == 4 * NUM_WORDS


def test_unknown_words_stay_oov_inside_a_scope():
    assert negating.encode("not zzqqxxnotaword") == [START, negating.encode("not")[1], OOV]


def test_ids_stay_below_the_id_count():
    assert negating.id_count == 2 * NUM_WORDS and keras_rule.id_count == NUM_WORDS
    tokens = negating.encode_batch(["not " + " ".join(["the film was good and the story great"] * 30)])
    assert tokens.max() < negating.id_count and (tokens >= NUM_WORDS).any()


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer rule"):
        Tokenizer(WORD_INDEX, NUM_WORDS, 500, "bpe")


words_and_marks = st.lists(st.sampled_from(["not", "good", "never", "film", "didn't", "didnt", "but", "bad", "Ünï",
                                            "although", "However", "though", "yet",
                                            "İ", ",", ".", "!", " ", "\t", ";", "<br />", "no", "great", "ΑΣ"]),
                           max_size=60).map(" ".join)


@given(st.one_of(st.text(), words_and_marks))
@settings(max_examples=1_000, deadline=None)
def test_the_words_are_kerass_and_only_scoped_known_words_are_shifted(text):
    negated_words, outweighed_words = negation_scopes(text), contrast_scopes(text)
    across = scope_codes(text, across=True)
    assert [code & NEGATED for code in across] == [code & NEGATED for code in scope_codes(text)]  # contrasts only
    assert all(code & OUTWEIGHED for code, before in zip(across, outweighed_words, strict=True) if before)
    assert len(negated_words) == len(outweighed_words) == len(text_to_words(text))
    plain, negated, scoped = keras_rule.encode(text), negating.encode(text), scoping.encode(text)
    assert len(negated) == len(scoped) == len(plain)
    for is_negated, is_outweighed, before, after_negation, after_scopes in zip(
            [False, *negated_words], [False, *outweighed_words], plain, negated, scoped, strict=True):
        known = before > OOV
        assert after_negation == (before + NUM_WORDS * is_negated if known else before)
        assert after_scopes == (before + NUM_WORDS * (is_negated + 2 * is_outweighed) if known else before)


@given(words_and_marks, st.integers(1, 12))
@settings(max_examples=500, deadline=None)
def test_truncation_keeps_the_last_words_with_the_scopes_the_whole_review_gave_them(text, max_len):
    short = Tokenizer(WORD_INDEX, NUM_WORDS, max_len, KERAS_SCOPES)
    whole = scoping.encode(text)
    encoded = short.encode_reviews([text])
    expected = whole[-max_len:]
    row = encoded.tokens[0]
    assert row[max_len - len(expected):].tolist() == expected and not row[:max_len - len(expected)].any()
    assert bool(encoded.truncated[0]) == (len(whole) - 1 > max_len)
    assert encoded.known_words()[0] == np.count_nonzero(np.asarray(expected) > OOV)

