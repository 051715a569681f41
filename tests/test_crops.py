"""Sentence crops (training/crops.py): short training texts cut from reviews, labelled by them, held out with them;
and the sentences the counterfactual pairs' editors changed, labelled by their edit."""

from dataclasses import replace

import numpy as np
import pytest

from training import presets
from training.cad import CadPair, CadSet, Review
from training.crops import edited_sentences, sentence_crops
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
