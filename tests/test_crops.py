"""Sentence crops (training/crops.py): short training texts cut from reviews, labelled by them, held out with them;
the sentences the counterfactual pairs' editors changed, labelled by their edit; and two of those joined by a
contrast, labelled as the sentence the contrast says."""

from dataclasses import replace

import numpy as np
import pytest

from artifacts.tokenizer import OUTWEIGHED, scope_codes, text_to_words
from training import presets
from training.cad import CadPair, CadSet, Review
from training.crops import contrast_joins, edited_sentences, sentence_crops
from training.pipeline import Reviews, training_set
from training.robustness import sentences

LONG = ["It opens well. The middle drags badly. The cast is lovely. I would watch it again.",
        "Dreadful. Boring from start to end! Nobody should pay for this. Avoid it."]
SHORT = "Two sentences only. Not enough to crop."


def test_every_crop_is_one_or_two_adjacent_sentences_of_its_review_with_its_label():
    texts, labels = [LONG[0], SHORT, LONG[1]], [1.0, 0.0, 0.0]
    crops, crop_labels, sources = sentence_crops(texts, labels, per_review=20)
    assert len(crops) == 40 and set(sources.tolist()) == {0, 2}  # the two-sentence review gives none
    lengths = set()
    for crop, label, source in zip(crops, crop_labels, sources, strict=True):
        parts = sentences(texts[source])
        assert label == labels[source]
        spans = [parts[i:i + n] for n in (1, 2) for i in range(len(parts) - n + 1)]
        matches = [span for span in spans if " ".join(span) == crop]
        assert matches, crop
        lengths.add(len(matches[0]))
    assert lengths == {1, 2}


def test_crops_are_the_same_on_every_call_and_differ_with_the_seed():
    first = sentence_crops(LONG, [1.0, 0.0], per_review=3)
    assert sentence_crops(LONG, [1.0, 0.0], per_review=3)[0] == first[0]
    assert any(sentence_crops(LONG, [1.0, 0.0], per_review=3, seed=seed)[0] != first[0] for seed in range(5))


def test_no_crops_are_asked_for_none_are_made():
    crops, labels, sources = sentence_crops(LONG, [1.0, 0.0], per_review=0)
    assert crops == [] and labels.dtype == np.float32 and sources.dtype == np.int64 and len(sources) == 0


def test_a_preset_with_crops_fits_on_them_beside_the_review_they_came_from():
    reviews = Reviews(train_texts=[LONG[0], SHORT, LONG[1]], y_train=np.array([1, 0, 0], np.float32),
                      test_texts=[], test_labels=np.zeros(0, int))
    config = replace(presets.TUNED["bigram_bag"], sentence_crops=2)
    train = training_set(reviews, config, cad=None)
    assert train.texts == reviews.train_texts and len(train.extra_texts) == 4
    assert sorted(train.extra_sources.tolist()) == [0, 0, 2, 2]
    assert train.extra_labels.tolist() == [reviews.y_train[i] for i in train.extra_sources]
    assert train.counterfactual is None
    assert training_set(reviews, presets.TUNED["bigram_bag"], cad=None).extra_texts == []


def edit(original, label, edited):
    return CadPair("p", Review(original, label), Review(edited, 1 - label), 0)


def test_the_sentences_an_editor_changed_come_from_both_reviews_each_with_its_reviews_label():
    pair = edit("The cast is big. It was boring throughout. I left early.", 0,
                "The cast is big. It was never boring. I stayed to the end.")
    assert edited_sentences([pair]) == [
        Review("It was boring throughout.", 0), Review("It was never boring.", 1),
        Review("I left early.", 0), Review("I stayed to the end.", 1)]  # "The cast is big." carries nothing


def test_sentences_rewritten_into_another_count_are_one_text_and_an_added_one_stands_alone():
    merged = edit("Great. Loved it. The cast is big.", 1, "Awful and hated it. The cast is big.")
    assert edited_sentences([merged]) == [Review("Great. Loved it.", 1), Review("Awful and hated it.", 0)]
    added = edit("The cast is big.", 1, "The cast is big. Sadly it is dull.")
    assert edited_sentences([added]) == [Review("Sadly it is dull.", 0)]
    removed = edit("The cast is big. Sadly it is dull.", 0, "The cast is big.")
    assert edited_sentences([removed]) == [Review("Sadly it is dull.", 0)]
    assert edited_sentences([edit("Same words.", 1, "Same words.")]) == []


def test_a_rewrite_that_reads_the_same_words_is_left_out_rather_than_learned_under_both_labels():
    pair = edit('I give it "2 out of 10". The russian cast is dull.', 0,
                'I give it ""2 out of 10"". The Russian cast is fun.')
    assert edited_sentences([pair]) == [Review("The russian cast is dull.", 0), Review("The Russian cast is fun.", 1)]


def test_a_preset_with_edited_sentences_fits_on_them_as_often_as_it_says():
    pairs = [edit("The cast is big. It was boring throughout.", 0, "The cast is big. It was never boring.")]
    cad = {"train": CadSet(pairs, []), "dev": CadSet([], [])}
    reviews = Reviews(train_texts=[LONG[0], LONG[1]], y_train=np.array([1, 0], np.float32),
                      test_texts=[], test_labels=np.zeros(0, int))
    config = replace(presets.TUNED["bigram_bag"], counterfactual_copies=1, counterfactual_sentences=3)
    train = training_set(reviews, config, cad)
    assert train.extra_texts == [pairs[0].original.text, pairs[0].edited.text] + [
        "It was boring throughout.", "It was never boring."] * 3
    assert train.extra_labels.tolist() == [0, 1] * 4
    assert train.extra_sources.tolist() == [-1] * 8  # from no IMDB review the seed's split could hold out
    assert train.counterfactual.edited_sentences == 2  # sentences, not copies of them
    without = training_set(reviews, replace(config, counterfactual_sentences=0), cad)
    assert without.extra_texts == train.extra_texts[:2] and without.counterfactual.edited_sentences is None
    unchanged = {"train": CadSet([edit("Same words.", 1, "Same words.")], []), "dev": CadSet([], [])}
    assert training_set(reviews, config, unchanged).counterfactual.edited_sentences == 0


def test_edited_sentences_come_beside_the_made_reviews_and_leave_their_count_alone():
    pairs = [edit(f"Great cast {i}, I loved it, the best. Fine.", 1, f"Awful cast {i}, I hated it, the worst. Fine.")
             for i in range(2)]
    cad = {"train": CadSet(pairs, []), "dev": CadSet([], [])}
    reviews = Reviews(train_texts=["The best film, great fun, I loved it."], y_train=np.array([1], np.float32),
                      test_texts=[], test_labels=np.zeros(0, int))
    config = replace(presets.TUNED["bigram_bag"], counterfactual_copies=1, made_counterfactuals=True)
    plain = training_set(reviews, config, cad)
    with_sentences = training_set(reviews, replace(config, counterfactual_sentences=1), cad)
    assert with_sentences.counterfactual.made_reviews == plain.counterfactual.made_reviews == 1
    assert with_sentences.extra_texts[:len(plain.extra_texts)] == plain.extra_texts
    assert with_sentences.extra_texts[len(plain.extra_texts):] == [
        "Great cast 0, I loved it, the best.", "Awful cast 0, I hated it, the worst.",
        "Great cast 1, I loved it, the best.", "Awful cast 1, I hated it, the worst."]


def test_edited_sentences_need_the_counterfactual_pairs():
    with pytest.raises(ValueError, match="counterfactual_sentences needs counterfactual_copies"):
        replace(presets.TUNED["bigram_bag"], counterfactual_sentences=1)


PRAISE = [Review("The cast is wonderful.", 1), Review("I loved every minute!", 1), Review("A moving, funny story.", 1)]
COMPLAINTS = [Review("The plot is thin.", 0), Review("It drags badly, sadly.", 0), Review("Dull. Very dull.", 0)]


CLAUSES = {"the cast is wonderful": 1, "I loved every minute": 1, "a moving, funny story": 1,
           "the plot is thin": 0, "it drags badly, sadly": 0}  # "Dull. Very dull." is two sentences: never joined


def conceded_and_said(review: Review) -> tuple[str, str, str]:
    """A join's contrast word, conceded clause and said clause."""
    text = review.text[0].lower() + review.text[1:-1]
    if text.startswith("although "):
        return next(("although", clause, text[len(f"although {clause}, "):]) for clause in CLAUSES
                    if text.startswith(f"although {clause}, "))
    conceded, said = text.split(", but ")
    return "but", conceded, said


def test_a_contrast_join_is_labelled_by_the_sentence_the_contrast_says_and_concedes_one_of_the_other_label():
    joins = contrast_joins(PRAISE + COMPLAINTS, 40)
    assert len(joins) == 40
    forms = set()
    for review in joins:
        assert review.text.endswith(".") and review.text[0].isupper()
        form, conceded, said = conceded_and_said(review)
        assert CLAUSES[said] == review.label and CLAUSES[conceded] == 1 - review.label, review
        assert form == "but" or "," not in conceded  # after "although" the whole clause is conceded
        forms.add(form)
    assert forms == {"but", "although"} and {review.label for review in joins} == {0, 1}


def test_the_tokenizer_reads_a_joins_conceded_clause_as_outweighed_and_its_said_clause_as_plain():
    for review in contrast_joins(PRAISE + COMPLAINTS, 20):
        form, conceded, said = conceded_and_said(review)
        codes = scope_codes(review.text, focus=True)
        conceded_words, said_words = len(text_to_words(conceded)), len(text_to_words(said))
        if form == "but":  # conceded, "but", said
            outweighed, plain = codes[:conceded_words], codes[conceded_words + 1:]
        else:  # "although", conceded, said
            outweighed, plain = codes[1:1 + conceded_words], codes[1 + conceded_words:]
        assert len(plain) == said_words
        assert all(code & OUTWEIGHED for code in outweighed) and not any(code & OUTWEIGHED for code in plain), review


def test_joins_are_the_same_on_every_call_and_none_are_made_without_both_labels():
    assert contrast_joins(PRAISE + COMPLAINTS, 8) == contrast_joins(PRAISE + COMPLAINTS, 8)
    assert any(contrast_joins(PRAISE + COMPLAINTS, 8, seed=s) != contrast_joins(PRAISE + COMPLAINTS, 8)
               for s in range(5))
    assert contrast_joins(PRAISE, 8) == [] and contrast_joins(PRAISE + COMPLAINTS, 0) == []


def test_a_preset_with_contrast_joins_fits_on_them_beside_the_pairs_and_records_how_many():
    pairs = [edit("The cast is big. It was boring throughout.", 0, "The cast is big. It was never boring.")]
    cad = {"train": CadSet(pairs, []), "dev": CadSet([], [])}
    reviews = Reviews(train_texts=[LONG[0], LONG[1]], y_train=np.array([1, 0], np.float32),
                      test_texts=[], test_labels=np.zeros(0, int))
    config = replace(presets.TUNED["bigram_bag"], counterfactual_copies=1, contrast_joins=6)
    train = training_set(reviews, config, cad)
    assert train.extra_texts[:2] == [pairs[0].original.text, pairs[0].edited.text]
    assert train.extra_texts[2:] == [review.text for review in contrast_joins(edited_sentences(pairs), 6)]
    assert {"It was boring throughout, but it was never boring.", "It was never boring, but it was boring "
            "throughout."} >= set(train.extra_texts[2:6:2])
    assert train.extra_sources.tolist() == [-1] * 8
    assert train.counterfactual.contrast_joins == 6 and train.counterfactual.edited_sentences is None
    with pytest.raises(ValueError, match="contrast_joins needs counterfactual_copies"):
        replace(presets.TUNED["bigram_bag"], contrast_joins=1)
