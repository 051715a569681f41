"""The tokenizer rules with scopes: ``keras_negation`` (a negated known word shifted by num_words) and
``keras_scopes`` (also a word a contrast outweighs, shifted by 2 * num_words): the same words as Keras's rule;
the scopes of ``keras_scopes_spelling_across`` (a contrast that opens a sentence outweighs the one before) and of
``keras_scopes_spelling_focus`` (a negation read on its focus), ``keras_scopes_spelling_focus_cueless`` (its
word that opens a negation read as padding) and ``keras_scopes_spelling_focus_across_cue`` (that word read as a
word a contrast outweighs)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artifacts.tokenizer import (
    CUE,
    KERAS,
    KERAS_FILTERS,
    KERAS_NEGATION,
    KERAS_SCOPES,
    KERAS_SCOPES_SPELLING,
    KERAS_SCOPES_SPELLING_ACROSS,
    KERAS_SCOPES_SPELLING_FOCUS,
    KERAS_SCOPES_SPELLING_FOCUS_ACROSS,
    KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE,
    KERAS_SCOPES_SPELLING_FOCUS_CUELESS,
    NEGATED,
    OOV,
    OUTWEIGHED,
    PAD,
    START,
    Tokenizer,
    contrast_scopes,
    negation_scopes,
    negator,
    scope_codes,
    text_to_words,
)
from artifacts.tokenizer import words_and_marks as split_words_and_marks
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


def negated_on_focus(text: str) -> list[str]:
    return [word for word, code in zip(text_to_words(text), scope_codes(text, focus=True), strict=True)
            if code & NEGATED]


def test_on_its_focus_a_negation_reaches_the_first_word_it_can_negate_and_no_further():
    assert negated_on_focus("There was nothing boring about this film.") == ["boring"]
    assert negated_on_focus("I have never seen such a dull film") == ["seen"]  # "dull" reads plain
    assert negated_on_focus("There wasn't a single dull moment in it") == ["a", "single", "dull"]
    assert negated_on_focus("It isn't very good, and it is not at all funny") == ["very", "good", "at", "all", "funny"]


def test_on_its_focus_a_negation_goes_on_through_or_and_nor_opens_its_own():
    assert negated_on_focus("not funny or clever at all") == ["funny", "clever"]
    assert negated_on_focus("neither slow nor predictable, and moving") == ["slow", "predictable"]
    assert negated_on_focus("not funny and clever") == ["funny"]
    assert negated_on_focus("not funny, or clever") == ["funny"]  # a comma ends the clause as before


def test_the_focus_rule_reads_as_keras_scopes_spelling_but_for_the_words_after_a_negations_focus():
    focus = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES_SPELLING_FOCUS)
    spelling = Tokenizer(WORD_INDEX, NUM_WORDS, 500, KERAS_SCOPES_SPELLING)
    assert focus.id_count == 4 * NUM_WORDS
    text = "The acting was superb, but the plot was dreadfull although short."  # no negation: the same ids
    assert focus.encode(text) == spelling.encode(text)
    never, seen, dull = (focus.encode(word)[1] for word in ("never", "seen", "dull"))
    assert focus.encode("never seen a dull film")[1:4] == [never, seen + NUM_WORDS, focus.encode("a")[1]]
    assert spelling.encode("never seen a dull film")[4] == dull + NUM_WORDS


focus_rule = Tokenizer(WORD_INDEX, NUM_WORDS, 20, KERAS_SCOPES_SPELLING_FOCUS)
cueless = Tokenizer(WORD_INDEX, NUM_WORDS, 20, KERAS_SCOPES_SPELLING_FOCUS_CUELESS)
focus_across = Tokenizer(WORD_INDEX, NUM_WORDS, 20, KERAS_SCOPES_SPELLING_FOCUS_ACROSS)
cue_outweighed = Tokenizer(WORD_INDEX, NUM_WORDS, 20, KERAS_SCOPES_SPELLING_FOCUS_ACROSS_CUE)


def test_without_cues_the_word_that_opens_a_negation_reads_as_padding_and_its_focus_as_negated():
    boring = keras_rule.encode("boring")[1]
    assert cueless.encode("There was nothing boring.")[3:] == [PAD, boring + NUM_WORDS]
    assert focus_rule.encode("There was nothing boring.")[3] == keras_rule.encode("nothing")[1]
    read = cueless.encode_reviews(["Neither slow nor predictable", "No."])
    assert list(read.tokens[0, -4:]) == [PAD, keras_rule.encode("slow")[1] + NUM_WORDS, PAD,
                                         keras_rule.encode("predictable")[1] + NUM_WORDS]
    assert list(read.tokens[1, -2:]) == [START, PAD] and list(read.words) == [4, 1] and list(read.known) == [2, 0]


def test_with_cues_outweighed_the_word_that_opens_a_negation_reads_as_a_conceded_word_and_the_rest_as_before():
    nothing, boring, wasnt, bad = (keras_rule.encode(word)[1] for word in ("nothing", "boring", "wasn't", "bad"))
    assert cue_outweighed.spells and cue_outweighed.id_count == 4 * NUM_WORDS
    assert cue_outweighed.encode("There was nothing boring.")[3:] == [nothing + 2 * NUM_WORDS, boring + NUM_WORDS]
    assert focus_across.encode("There was nothing boring.")[3] == nothing
    # a cue a contrast outweighs already stays there; the focus after a "but" keeps its negation alone
    assert cue_outweighed.encode("It wasn't bad, but not good")[2:4] == [wasnt + 2 * NUM_WORDS, bad + 3 * NUM_WORDS]
    assert cue_outweighed.encode("good but not bad")[3:] == [keras_rule.encode("not")[1] + 2 * NUM_WORDS,
                                                             bad + NUM_WORDS]


def test_ids_stay_below_the_id_count():
    assert negating.id_count == 2 * NUM_WORDS and keras_rule.id_count == NUM_WORDS
    tokens = negating.encode_batch(["not " + " ".join(["the film was good and the story great"] * 30)])
    assert tokens.max() < negating.id_count and (tokens >= NUM_WORDS).any()


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown tokenizer rule"):
        Tokenizer(WORD_INDEX, NUM_WORDS, 500, "bpe")


words_and_marks = st.lists(st.sampled_from(["not", "good", "never", "film", "didn't", "didnt", "but", "bad", "Ünï",
                                            "although", "However", "though", "yet", "or", "nor", "a", "very",
                                            "neither", "İ", ",", ".", "!", " ", "\t", ";", "<br />", "no", "great",
                                            "ΑΣ"]),
                           max_size=60).map(" ".join)


@given(st.one_of(st.text(), words_and_marks))
@settings(max_examples=1_000, deadline=None)
def test_the_words_are_kerass_and_only_scoped_known_words_are_shifted(text):
    negated_words, outweighed_words = negation_scopes(text), contrast_scopes(text)
    across, on_focus, clause = scope_codes(text, across=True), scope_codes(text, focus=True), scope_codes(text)
    assert [code & NEGATED for code in across] == [code & NEGATED for code in clause]  # contrasts only
    assert [code & OUTWEIGHED for code in on_focus] == [code & OUTWEIGHED for code in clause]  # negations only
    assert all(wide & NEGATED for code, wide in zip(on_focus, clause, strict=True) if code & NEGATED)  # narrower
    cues = [bool(code & CUE) for code in on_focus]
    assert cues == [negator(word) for word in text_to_words(text)] and not any(code & CUE for code in clause)
    assert cueless.encode(text)[1:] == [PAD if cue else index
                                        for cue, index in zip(cues, focus_rule.encode(text)[1:], strict=True)]
    shifted = [(index % NUM_WORDS) + NUM_WORDS * ((index // NUM_WORDS) | OUTWEIGHED) if cue and index > OOV else index
               for cue, index in zip(cues, focus_across.encode(text)[1:], strict=True)]
    assert cue_outweighed.encode(text)[1:] == shifted
    assert all(code & OUTWEIGHED for code, before in zip(across, outweighed_words, strict=True) if before)
    assert len(negated_words) == len(outweighed_words) == len(text_to_words(text))
    plain, negated, scoped = keras_rule.encode(text), negating.encode(text), scoping.encode(text)
    assert len(negated) == len(scoped) == len(plain)
    for is_negated, is_outweighed, before, after_negation, after_scopes in zip(
            [False, *negated_words], [False, *outweighed_words], plain, negated, scoped, strict=True):
        known = before > OOV
        assert after_negation == (before + NUM_WORDS * is_negated if known else before)
        assert after_scopes == (before + NUM_WORDS * (is_negated + 2 * is_outweighed) if known else before)


# What the tokenizer's one split must find: the words of the Keras rule (runs of characters that are neither
# whitespace, as str.split() has it, nor a filter) and the punctuation that ends clauses and sentences.
WORDS_AND_MARKS = re.compile("[.,!?;:]|[^\\s" + re.escape(KERAS_FILTERS) + "]+")
# Text with every kind of thing the split must find or pass over: scope words in capitals, every mark, other filters,
# apostrophes, paragraph breaks, whitespace str.split() knows and bytes.split() does not, letters that lower-case
# to two, a lone surrogate.
scoped_reviews = st.lists(st.sampled_from(["not", "good", "never", "nothing", "film", "didn't", "DIDN'T", "Wasn't",
                                           "didnt", "but", "bad", "although", "despite", "However", "yet", "or",
                                           "nor", "a", "the", "very", "was", "boring", "neither", ",", ".", "!", "?",
                                           ":", ";", "<br /><br />", "br", "Ünï", "don't.", "(not)", "n't", "'",
                                           " ", "\t", "\x1c", "\u00a0", "İ", "ΑΣ", "\ud800"]),
                          max_size=80).map(" ".join)


@given(st.one_of(st.text(), scoped_reviews, scoped_reviews.map(lambda text: text.replace(" ", ""))))
@settings(max_examples=1_000, deadline=None)
def test_one_split_finds_the_words_and_marks_the_regular_expression_finds(text):
    assert split_words_and_marks(text) == WORDS_AND_MARKS.findall(text.lower())


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


@given(words_and_marks)
def test_read_both_across_sentences_and_on_their_focus_contrasts_read_as_across_and_negations_as_focus(text):
    both = scope_codes(text, across=True, focus=True)
    assert [code & OUTWEIGHED for code in both] == [code & OUTWEIGHED for code in scope_codes(text, across=True)]
    assert [code & ~OUTWEIGHED for code in both] == [code & ~OUTWEIGHED for code in scope_codes(text, focus=True)]


def test_the_focus_across_rule_reads_never_dull_negated_and_the_sentence_before_a_however_outweighed():
    assert focus_across.spells and focus_across.id_count == 4 * NUM_WORDS
    plain = keras_rule.encode("great; however, never dull")
    assert focus_across.encode("great; however, never dull") == [START, plain[1] + 2 * NUM_WORDS, plain[2],
                                                                 plain[3], plain[4] + NUM_WORDS]
    assert focus_rule.encode("great; however, never dull")[1] == plain[1]  # focus alone: "great" plain
