"""The counterfactual pairs' reader and the robustness evaluation (training/cad.py, training/robustness.py)."""

from dataclasses import replace

import numpy as np
import pytest

from training.cad import CadPair, Review, flipped, load_cad, substitutions
from training.checklist import load_checklist
from training.data import DataError
from training.robustness import RobustnessSets, evaluate, sentences, snippets

IMDB_TRAIN = ["A wonderful film,<br />I loved it.", "A dull film. I hated it!", "Another review entirely."]
HEADER = "Sentiment\tText\tbatch_id\n"


def write_cad(folder, split_file, rows):
    (folder / "cad").mkdir(exist_ok=True)
    (folder / "cad" / split_file).write_text(HEADER + "".join(f"{s}\t{t}\t{b}\n" for s, t, b in rows), encoding="utf-8")


def test_the_original_of_a_pair_is_the_row_whose_words_are_an_imdb_training_review(tmp_path):
    write_cad(tmp_path, "dev_paired.tsv", [
        ("Negative", "A wonderful film.<br />I hated it!", 7),  # the edited copy comes first here
        ("Positive", '"a WONDERFUL film. <br />I loved it"', 7),  # quotes, case and punctuation differ
    ])
    (pair,) = load_cad("dev", IMDB_TRAIN, tmp_path).pairs
    assert (pair.pair_id, pair.train_index, pair.original.label, pair.edited.label) == ("7", 0, 1, 0)
    assert pair.edited.text == "A wonderful film.<br />I hated it!"


def test_a_pair_without_exactly_one_imdb_original_is_skipped_and_reported(tmp_path):
    write_cad(tmp_path, "train_paired.tsv", [
        ("Positive", "A wonderful film, <br />I loved it.", 1), ("Negative", "A dull film. I hated it!", 1),  # both
        ("Positive", "Never seen before.", 2), ("Negative", "Never seen either.", 2),  # neither
        ("Positive", "A wonderful film, <br />I loved it.", 3), ("Negative", "A awful film, I hated it.", 3),
    ])
    found = load_cad("train", IMDB_TRAIN, tmp_path)
    assert [pair.pair_id for pair in found.pairs] == ["3"] and found.skipped == ["1", "2"]


@pytest.mark.parametrize("content, problem", [
    ("Sentiment,Text,batch_id\n", "header"),
    (HEADER + "Neutral\tMeh.\t1\n", ":2: expected Positive|Negative"),
    (HEADER + "Positive\tno batch id\n", ":2: expected"),
])
def test_a_malformed_file_is_a_data_error_naming_the_line(tmp_path, content, problem):
    (tmp_path / "cad").mkdir()
    (tmp_path / "cad" / "dev_paired.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=problem):
        load_cad("dev", IMDB_TRAIN, tmp_path)


def test_a_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_cad("dev", IMDB_TRAIN, tmp_path)


def test_snippets_are_the_first_and_last_sentence_without_markup():
    review = "Saw it on TV.<br /><br />The middle part drags! But the ending is great."
    assert sentences(review) == ["Saw it on TV.", "The middle part drags!", "But the ending is great."]
    found = snippets([review, "One sentence only."], [1, 0])
    assert (found.first, found.last, found.labels.tolist()) == (["Saw it on TV."], ["But the ending is great."], [1])


def test_the_evaluation_counts_what_a_scorer_gets_right(tmp_path):
    write_cad(tmp_path, "dev_paired.tsv", [
        ("Positive", "A wonderful film,<br />I loved it.", 1), ("Negative", "A wonderful film, I hated it.", 1),
        ("Negative", "A dull film. I hated it!", 2), ("Positive", "A dull film. I loved it!", 2),
    ])
    sets = RobustnessSets(load_cad("dev", IMDB_TRAIN, tmp_path).pairs, load_checklist(),
                          snippets(["Loved it. Great.", "Hated it. Awful."], [1, 0]))

    def says_positive_for_loved(texts):  # knows one word: "loved"
        return np.array([0.9 if "loved" in text.lower() else 0.1 for text in texts])

    figures = evaluate(says_positive_for_loved, sets, originals_in_training=False)
    assert (figures.cad_dev_original, figures.cad_dev_edited, figures.cad_dev_pair_consistency) == (1.0, 1.0, 1.0)
    assert (figures.snippets_first_sentence, figures.snippets_last_sentence) == (1.0, 0.5)
    expected = np.mean([("loved" in item.text.lower()) == bool(item.label) for item in sets.checklist])
    assert figures.checklist == round(float(expected), 4) and figures.checklist_reviews == len(sets.checklist)
    assert set(figures.checklist_by_category) == {item.category for item in sets.checklist}

    always_positive = evaluate(lambda texts: np.full(len(texts), 0.7), sets, originals_in_training=True)
    assert always_positive.cad_dev_pair_consistency == 0.0 and always_positive.cad_dev_originals_in_training


def pair(pair_id, original, label, edited):
    return CadPair(pair_id, Review(original, label), Review(edited, 1 - label), 0)


def test_substitutions_are_the_editors_consistent_one_word_swaps_per_direction():
    pairs = [pair("1", "A great film, I loved it.", 1, "A great film, I hated it."),
             pair("2", "I loved it and the cast.", 1, "I hated it and the cast."),
             pair("3", "Bad. The cast was bad and the film is bad.", 0, "Good. The cast was good and the film is bad."),
             pair("4", "It is bad, I hated it.", 0, "It is good, I loved it."),
             pair("5", "Loved it, the plot is dull.", 1, "Loved it, the plot is fine.")]  # once, and unsure
    lexicon = substitutions(pairs)
    assert lexicon == {1: {"loved": "hated"}, 0: {"bad": "good"}}


def test_a_flipped_review_keeps_the_text_around_the_swapped_words_and_takes_the_other_label():
    lexicon = {1: {"great": "awful", "loved": "hated", "best": "worst"}, 0: {}}
    made = flipped(Review("GREAT acting; I loved it, not the best.<br />Great!", 1), lexicon)
    assert made == Review("awful acting; I hated it, not the worst.<br />awful!", 0)
    assert flipped(Review("Great acting, I loved it.", 1), lexicon) is None  # two swaps: too little of it flipped


def test_a_review_flipped_by_negation_negates_its_swapped_words_where_no_negation_stands_before_them():
    lexicon = {1: {"great": "awful", "loved": "hated", "best": "worst", "is": "isn't"}, 0: {}}
    review = Review("GREAT acting; I loved it, not the best. It is fun.<br />Great!", 1)
    # "best" already stands in a negation's scope and "is" -> "isn't" is itself a negation: both are replaced
    made = flipped(review, lexicon, negate_every=1)
    assert made == Review("not GREAT acting; I not loved it, not the worst. It isn't fun.<br />not Great!", 0)
    every_second = flipped(review, lexicon, negate_every=2)  # the 1st, 3rd and 5th swapped word
    assert every_second == Review("not GREAT acting; I hated it, not the worst. It isn't fun.<br />not Great!", 0)
    assert flipped(Review("Great acting, I loved it.", 1), lexicon, negate_every=1) is None  # two swaps, as before


def test_every_second_negation_counts_only_negatable_words_and_keeps_a_word_an_inserted_not_already_negates():
    lexicon = {1: {"great": "awful", "loved": "hated", "best": "worst", "fun": "dull"}, 0: {}}
    # "great" is negated already, so the first negatable word is "loved"
    assert flipped(Review("Not great, loved it, the best, fun.", 1), lexicon, negate_every=2) == Review(
        "Not awful, not loved it, the worst, not fun.", 0)
    # "fun" stands in the inserted "not"'s clause: "dull" there would read as a negated "dull", a positive word
    assert flipped(Review("Great and fun film, loved it.", 1), lexicon, negate_every=2) == Review(
        "not Great and fun film, not loved it.", 0)


def test_read_on_its_focus_an_inserted_not_negates_only_the_word_it_stands_before():
    lexicon = {1: {"great": "awful", "loved": "hated", "fun": "dull"}, 0: {}}
    review = Review("Great and fun film, loved it.", 1)
    # on the focus rules, "fun" after "not Great and" reads plain: it is swapped, so the made review reads negative
    assert flipped(review, lexicon, negate_every=2, focus=True) == Review("not Great and dull film, not loved it.", 0)
    # a negation's focus is replaced; a word past it, which the clause rule would read negated too, is negated
    review = Review("Not great and fun, loved it.", 1)
    assert flipped(review, lexicon, negate_every=1, focus=True) == Review("Not awful and not fun, not loved it.", 0)
    assert flipped(review, lexicon, negate_every=1) == Review("Not awful and dull, not loved it.", 0)


def test_the_made_negations_options_put_negated_words_in_the_training_set_as_they_say():
    from training.cad import CadSet
    from training.pipeline import Reviews, training_set
    from training.presets import TrainingConfig

    edits = [pair(str(i), f"Great cast {i}, I loved it, the best.", 1, f"Awful cast {i}, I hated it, the worst.")
             for i in range(2)] + [pair(str(i), f"Dull cast {i}, I hated it, so dull.", 0,
                                        f"Fine cast {i}, I loved it, so fine.") for i in range(2, 4)]
    cad = {"train": CadSet(edits, []), "dev": CadSet([], [])}
    texts = ["The best film, great fun, I loved it.", "Dull and slow, dull, I hated it."]
    reviews = Reviews(texts, np.array([1.0, 0.0], np.float32), [], np.array([], int))
    config = TrainingConfig(family="bag", counterfactual_copies=1, made_counterfactuals=True)

    def made(negations):
        run = training_set(reviews, replace(config, made_negations=negations), cad)
        texts = [text for text, source in zip(run.extra_texts, run.extra_sources, strict=True) if source >= 0]
        assert run.counterfactual.made_reviews == len(texts)
        return texts

    swapped = ["The worst film, awful fun, I hated it.", "fine and slow, fine, I loved it."]
    assert made(None) == swapped
    assert made("copies") == [*swapped, "The not best film, not great fun, I not loved it.",
                              "not Dull and slow, not dull, I not hated it."]
    assert made("complaint_copies") == [*swapped, "not Dull and slow, not dull, I not hated it."]
    assert made("alternate") == ["The not best film, awful fun, I not loved it.",
                                 "not Dull and slow, fine, I not hated it."]


def test_a_review_with_too_small_a_share_of_its_words_swapped_is_not_flipped():
    lexicon = {1: {"great": "awful", "loved": "hated", "best": "worst"}, 0: {}}
    review = Review("Great acting, I loved it, the best. " + "Then the plot goes on and on. " * 3, 1)  # 3 of 26
    assert flipped(review, lexicon, min_share=0.1) is not None and flipped(review, lexicon, min_share=0.2) is None
