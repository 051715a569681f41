"""The sentiment lexicon the bags can read beside their learned rows (training/lexicon.py, models.LexiconMean)."""

from dataclasses import replace

import numpy as np
import pytest

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import INDEX_FROM
from training import fit, lexicon, models, presets

WORD_INDEX = {"the": 1, "film": 2, "good": 3, "awful": 4, "not": 5, "loathed": 6, "rare": 400}
RATED = {"good": 1.9, "awful": -2.0, "not": -1.0, "loathed": -2.1, "rare": 3.0}
LEXICON = presets.TrainingConfig(family="bag", num_words=300, max_len=12, embedding_dim=4, tokenizer="keras_scopes",
                                 ngram_orders=(2,), ngram_buckets_log2=6, ngram_dim=3, bag_pooling="salience",
                                 concession_weight=0.5, lexicon_prior=True)


def lexicon_model(config=LEXICON):
    model = models.build("lexicon", config)
    models.set_lexicon(model, lexicon.id_valences(WORD_INDEX, config.num_words, 4, RATED))
    return model


def test_vaders_lexicon_rates_the_words_imdb_seldom_uses_as_their_raters_did():
    rated = lexicon.valences()
    assert len(rated) > 7_000
    assert rated["loathed"] < -1 and rated["despised"] < -1 and rated["good"] > 1 and rated["awful"] < -1
    assert all(" " not in word for word in rated)


def test_each_id_has_its_words_valence_turned_where_negated_and_none_for_negations_and_words_out_of_reach():
    table = lexicon.id_valences(WORD_INDEX, 300, 4, RATED)
    good = WORD_INDEX["good"] + INDEX_FROM
    assert table.shape == (1_200,) and table.dtype == np.float32
    assert table[good] == pytest.approx(1.9 / 4)
    assert table[good + 300] == pytest.approx(-0.74 * 1.9 / 4)  # negated
    assert table[good + 600] == pytest.approx(1.9 / 4)  # outweighed: the conceded weight weighs it
    assert table[good + 900] == pytest.approx(-0.74 * 1.9 / 4)
    assert table[WORD_INDEX["not"] + INDEX_FROM] == 0  # a negation says what it says through the word it negates
    assert np.count_nonzero(table[:300]) == 3  # good, awful, loathed; "rare" is beyond num_words; ids 0-2 unrated


def test_the_lexicon_feature_is_the_mean_valence_of_the_rated_words_with_a_conceded_one_at_its_weight():
    model = lexicon_model()
    feature = models.keras.Model(model.input, model.get_layer("lexicon_mean").output)
    tokenizer = Tokenizer(WORD_INDEX, 300, 12, "keras_scopes")
    texts = ["the film loathed", "awful, but good", "not good", "the film", "the film, not awful"]
    got = feature.predict(tokenizer.encode_batch(texts), verbose=0).ravel()
    expected = [-2.1 / 4, (0.5 * -2.0 + 1.9) / 4 / 1.5, -0.74 * 1.9 / 4, 0.0, -0.74 * -2.0 / 4]
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_the_lexicon_table_is_not_trained_and_survives_a_weights_only_copy():
    model = lexicon_model()
    layer = model.get_layer("lexicon_mean")
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 1
    copy = models.build("lexicon", LEXICON)
    copy.set_weights(model.get_weights())
    np.testing.assert_array_equal(copy.get_layer("lexicon_mean").get_weights()[0], layer.get_weights()[0])


def test_a_lexicon_bag_exports_to_onnx_with_parity():
    from training import export

    model = lexicon_model()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, LEXICON.input_ids, (32, 12), dtype=np.int32)
    tokens[:4] = 0  # no word at all
    tokens[4:8, :6] = 0
    tokens[8:12, -3:] = [WORD_INDEX["good"] + INDEX_FROM, WORD_INDEX["awful"] + INDEX_FROM + 600, 1]
    scores = model.predict(tokens, verbose=0).reshape(-1)
    assert export.check_parity(export.to_onnx(model, 12), scores, tokens) < 1e-5


def test_a_lexicon_model_is_not_built_for_training_without_the_word_index_it_reads():
    with pytest.raises(ValueError, match="pass the tokenizer's word index"):
        fit.seeded_model("lexicon", LEXICON, 0, 10)
    model, _ = fit.seeded_model("lexicon", LEXICON, 0, 10, WORD_INDEX)
    assert np.count_nonzero(model.get_layer("lexicon_mean").get_weights()[0]) > 0  # VADER's own ratings


def test_the_lexicon_prior_is_for_bags_and_its_table_must_fit_the_model():
    with pytest.raises(ValueError, match="lexicon_prior applies to the bag family only"):
        replace(presets.get("conv1d"), lexicon_prior=True)
    with pytest.raises(ValueError, match="the model reads 1200 ids"):
        models.set_lexicon(models.build("lexicon", LEXICON), np.zeros(300, np.float32))
