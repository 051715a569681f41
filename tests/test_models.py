import json
from dataclasses import replace

import numpy as np
import pytest

from tests.conftest import MODELS_DIR
from training import models, presets

COURSE_SHAPES = {
    "conv1d": ([None, 494, 32], [None, 98, 32], [None, 92, 32], [None, 32], [None, 1]),
    "conv_lstm": ([None, 496, 32], [None, 165, 32], [None, 161, 32], [None, 32], [None, 1]),
}
COURSE_PARAMETERS = {"conv1d": 1_315_937, "conv_lstm": 1_314_017}


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_architecture_matches_the_course(name):
    config = presets.get(name)
    assert (config.num_words, config.max_len, config.epochs, config.batch_size) == (10_000, 500, 10, 128)
    assert (config.optimizer, config.learning_rate, config.early_stopping_patience) == ("rmsprop", 1e-4, None)
    model = models.build(name, config)
    assert model.count_params() == COURSE_PARAMETERS[name]
    layers = models.describe(model)
    assert layers[0]["output_shape"] == [None, 500, 128]
    assert tuple(layer["output_shape"] for layer in layers[1:]) == COURSE_SHAPES[name]
    assert model.inputs[0].dtype == "int32"
    assert model.layers[-1].activation.__name__ == "sigmoid"


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_outputs_are_probabilities(name):
    model = models.build(name, presets.get(name))
    scores = model.predict(np.random.default_rng(0).integers(0, 10_000, (4, 500), dtype=np.int32), verbose=0)
    assert scores.shape == (4, 1) and ((scores > 0) & (scores < 1)).all()


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="unknown model 'gru'; choose from conv1d, conv_lstm"):
        presets.get("gru")


@pytest.mark.parametrize("name", sorted(presets.TUNED))
def test_tuned_presets_build_and_score(name):
    config = presets.get(name)
    model = models.build(name, config)
    assert model.inputs[0].shape == (None, config.max_len)
    tokens = np.random.default_rng(0).integers(0, config.num_words, (2, config.max_len), dtype=np.int32)
    assert model.predict(tokens, verbose=0).shape == (2, 1)


@pytest.mark.parametrize("tuned, explored", [("conv1d_tuned", "conv1d_e64_f64_k5_maxavg_20k"),
                                             ("conv_lstm_tuned", "conv_gru_adam_dropout"),
                                             ("bigram_bag", "bag_bigrams_b20_d8_e20")])
def test_shipped_presets_are_the_explored_winners(tuned, explored):
    from dataclasses import replace

    from training.explore import CANDIDATES

    shipped = replace(presets.get(tuned), seeds=CANDIDATES[explored].seeds, refit_on_all_training_reviews=False)
    assert shipped.to_dict() == CANDIDATES[explored].to_dict()
    if tuned.endswith("_tuned"):
        assert presets.get(tuned).family == presets.get(tuned.removesuffix("_tuned")).family


def test_hashed_bigrams_follow_the_words_and_skip_padding():
    layer = models.HashedNgrams(2, buckets_log2=12, num_words=1_000)
    tokens = np.array([[0, 0, 1, 5, 6, 5, 6], [0, 1, 6, 5, 6, 5, 7]], dtype=np.int32)
    ids = np.asarray(layer(tokens))
    assert ids.shape == (2, 6)
    assert (ids[0, :2] == 0).all() and (ids[1, 0] == 0)  # a pair with padding has no bucket
    assert ((ids[ids > 0] >= 1) & (ids[ids > 0] <= 2**12)).all()
    assert ids[0, 3] == ids[0, 5] == ids[1, 3]  # "5 6" wherever it occurs
    assert ids[0, 3] != ids[0, 4] == ids[1, 2]  # "6 5" is another bigram


def test_hashed_bigrams_spread_over_the_buckets():
    # The first hash, (a * V + b) mod 500,000 buckets with V = 20,000, gave these 40,000 pairs 5,000 buckets.
    layer = models.HashedNgrams(2, buckets_log2=19, num_words=20_000)
    first, second = np.meshgrid(np.arange(3, 203), np.arange(3, 203))  # the 40,000 pairs of the 200 top words
    pairs = np.stack([first.ravel(), second.ravel()], axis=1).astype(np.int32)
    buckets = np.asarray(layer(pairs))[:, 0]
    expected_distinct = 2**19 * (1 - (1 - 2**-19) ** len(pairs))  # uniform hashing
    assert len(np.unique(buckets)) > 0.97 * expected_distinct


def test_bag_model_averages_words_and_bigrams():
    config = presets.TrainingConfig(family="bag", num_words=1_000, max_len=40, embedding_dim=4,
                                    ngram_orders=(2,), ngram_buckets_log2=8, ngram_dim=3)
    model = models.build("bag", config)
    assert model.count_params() == 1_000 * 4 + (2**8 + 1) * 3 + (4 + 3) + 1
    tokens = np.zeros((2, 40), dtype=np.int32)
    tokens[:, -2:] = 17
    longer = tokens.copy()
    longer[:, -5:] = 17  # more of the same word and bigram: the same averages, the same score
    other = tokens.copy()
    other[:, -2:] = [17, 18]
    np.testing.assert_allclose(model.predict(tokens, verbose=0), model.predict(longer, verbose=0), atol=1e-6)
    assert not np.allclose(model.predict(tokens, verbose=0), model.predict(other, verbose=0), atol=1e-6)


def test_bag_model_exports_to_onnx_with_parity():
    from training import export

    config = presets.TrainingConfig(family="bag", num_words=1_000, max_len=50, embedding_dim=8,
                                    ngram_orders=(2,), ngram_buckets_log2=10, ngram_dim=4)
    model = models.build("bag", config)
    tokens = np.random.default_rng(0).integers(0, 1_000, (32, 50), dtype=np.int32)
    tokens[:8, :30] = 0
    scores = model.predict(tokens, verbose=0).reshape(-1)
    assert export.check_parity(export.to_onnx(model, 50), scores, tokens) < 1e-5


@pytest.mark.parametrize("rule, blocks", [("keras", 1), ("keras_negation", 2), ("keras_scopes", 4),
                                         ("keras_scopes_spelling", 4), ("keras_scopes_spelling_across", 4),
                                         ("keras_scopes_spelling_focus", 4),
                                         ("keras_scopes_spelling_focus_cueless", 4),
                                         ("keras_scopes_spelling_focus_across", 4),
                                         ("keras_scopes_spelling_focus_across_cue", 4)])
def test_a_bag_reads_every_id_its_tokenizer_rule_can_write(rule, blocks):
    config = presets.TrainingConfig(family="bag", num_words=1_000, max_len=20, embedding_dim=2, tokenizer=rule,
                                    ngram_orders=(2,), ngram_buckets_log2=6, ngram_dim=2)
    model = models.build("bag", config)
    assert config.input_ids == blocks * 1_000 and model.get_layer("word_embedding").input_dim == blocks * 1_000
    assert model.get_layer("hashed_2grams").num_words == blocks * 1_000  # bigram keys stay exact
    tokens = np.full((1, 20), blocks * 1_000 - 1, dtype=np.int32)
    assert np.isfinite(model.predict(tokens, verbose=0)).all()


CONCEDING = presets.TrainingConfig(family="bag", num_words=300, max_len=30, embedding_dim=4, tokenizer="keras_scopes",
                                   ngram_orders=(2,), ngram_buckets_log2=6, ngram_dim=3, bag_pooling="salience",
                                   concession_weight=0.25)


def test_a_conceded_word_reads_as_the_word_itself_with_the_concession_weight():
    model = models.build("conceding", CONCEDING)
    assert {"Conceded", "ConcessionOffset"} <= {layer["type"] for layer in models.describe(model)}  # as metadata has it
    words = models.keras.Model(model.input, model.get_layer("word_weighted_mean").output)
    table = model.get_layer("word_embedding").get_weights()[0]
    plain, conceded = np.zeros((1, 30), np.int32), np.zeros((1, 30), np.int32)
    plain[0, -2:] = [17, 40]
    conceded[0, -2:] = [17 + 2 * 300, 40]  # "17, but 40": 17 outweighed
    conceded_negated = conceded.copy()
    conceded_negated[0, -2] = 17 + 3 * 300
    np.testing.assert_allclose(words.predict(plain, verbose=0)[0], (table[17] + table[40]) / 2, atol=1e-6)
    np.testing.assert_allclose(words.predict(conceded, verbose=0)[0], (0.25 * table[17] + table[40]) / 1.25, atol=1e-6)
    np.testing.assert_allclose(words.predict(conceded_negated, verbose=0)[0],
                               (0.25 * table[17 + 300] + table[40]) / 1.25, atol=1e-6)  # negated, then conceded


def test_with_its_whole_weight_a_conceded_word_reads_exactly_as_the_word_itself_and_without_one_apart():
    tokens = np.zeros((1, 30), np.int32)
    tokens[0, -3:] = [17, 40, 41]
    conceded = tokens.copy()
    conceded[0, -3] += 2 * 300
    whole = models.build("whole", replace(CONCEDING, concession_weight=1.0))
    np.testing.assert_allclose(whole.predict(conceded, verbose=0), whole.predict(tokens, verbose=0), atol=1e-7)
    own_rows = models.build("own_rows", replace(CONCEDING, concession_weight=None))
    assert not np.allclose(own_rows.predict(conceded, verbose=0), own_rows.predict(tokens, verbose=0), atol=1e-7)


def test_a_concession_weight_needs_salience_pooling_and_contrast_scopes():
    with pytest.raises(ValueError, match="needs salience pooling"):
        replace(CONCEDING, bag_pooling="mean")
    with pytest.raises(ValueError, match="needs salience pooling"):
        replace(CONCEDING, tokenizer="keras_negation")
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        replace(CONCEDING, concession_weight=0.0)


CAPPED = replace(CONCEDING, concession_weight=0.5, concession_cap=0.5)


def capped_and_uncapped_models_reading_one_signed_dimension():
    """A capped bag and the same bag uncapped, with the same weights: the output layer reads the first dimension of
    the word rows only, word 17 pulls -10 ("awful") and word 40 +2 ("good")."""
    capped = models.build("capped", CAPPED)
    uncapped = models.build("uncapped", replace(CAPPED, concession_cap=None))
    table = np.zeros(capped.get_layer("word_embedding").get_weights()[0].shape, np.float32)
    table[17, 0], table[40, 0] = -10.0, 2.0
    kernel = np.zeros((4 + 3, 1), np.float32)
    kernel[0, 0] = 1.0
    for model in (capped, uncapped):
        model.get_layer("word_embedding").set_weights([table])
        bigrams = model.get_layer("2gram_embedding")
        bigrams.set_weights([np.zeros_like(bigrams.get_weights()[0])])
    capped.get_layer("pull").set_weights([kernel])
    capped.get_layer("capped_concession").set_weights([np.array([0.25], np.float32)])
    uncapped.layers[-1].set_weights([kernel, np.array([0.25], np.float32)])  # its Dense(1, sigmoid)
    return capped, uncapped


def logit(model, tokens) -> float:
    score = float(model.predict(tokens, verbose=0)[0, 0])
    return float(np.log(score / (1 - score)))


def test_with_a_cap_conceded_words_temper_what_the_others_say_but_do_not_overturn_it():
    capped, uncapped = capped_and_uncapped_models_reading_one_signed_dimension()
    kinds = {layer["type"] for layer in models.describe(capped)}  # as metadata has them
    assert {"OutweighedMask", "ConcededParts", "CappedConcession"} <= kinds
    awful_but_good = np.zeros((1, 30), np.int32)
    awful_but_good[0, -2:] = [17 + 2 * 300, 40]  # "awful, but good": 17 conceded, at half its weight
    # the plain words pull 2 / 1.5, the conceded one -10 * 0.5 / 1.5, clipped to half the plain pull
    assert logit(uncapped, awful_but_good) == pytest.approx(0.25 + (2 - 5) / 1.5, abs=1e-4)
    assert logit(capped, awful_but_good) == pytest.approx(0.25 + 2 / 1.5 - 0.5 * 2 / 1.5, abs=1e-4)


def test_where_the_conceded_words_agree_or_pull_less_than_the_cap_a_capped_bag_reads_as_the_uncapped_one():
    capped, uncapped = capped_and_uncapped_models_reading_one_signed_dimension()
    for words in ([40 + 2 * 300, 17], [17 + 2 * 300, 17], [40 + 2 * 300, 40, 40, 40], [17, 40], [17]):
        tokens = np.zeros((1, 30), np.int32)
        tokens[0, -len(words):] = words
        assert logit(capped, tokens) == pytest.approx(logit(uncapped, tokens), abs=1e-4), words


def test_the_conceded_parts_add_up_to_the_weighted_mean_of_the_whole_review():
    capped, uncapped = models.build("capped", CAPPED), models.build("uncapped", replace(CAPPED, concession_cap=None))
    rng = np.random.default_rng(0)
    for layer in capped.layers:
        if layer.name not in ("pull", "capped_concession") and layer.weights:
            weights = [rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()]
            layer.set_weights(weights)
            uncapped.get_layer(layer.name).set_weights(weights)
    tokens = rng.integers(0, CAPPED.input_ids, (16, 30), dtype=np.int32)
    tokens[:4, :25] = 0
    parts = models.keras.Model(capped.input, capped.get_layer("word_conceded_parts").output).predict(tokens, verbose=0)
    whole = models.keras.Model(uncapped.input, uncapped.get_layer("word_weighted_mean").output).predict(tokens,
                                                                                                          verbose=0)
    np.testing.assert_allclose(parts[:, 0] + parts[:, 1], whole, atol=1e-5)
    assert np.abs(parts[:, 1]).sum() > 0  # the random reviews hold conceded words


@pytest.mark.parametrize("config, randomised", [
    (CONCEDING, ("word_salience", "2gram_salience")),  # saliences that differ, so the weights matter
    (CAPPED, ("word_salience", "2gram_salience", "word_embedding", "pull")),  # and pulls that the cap clips
], ids=["conceding", "capped"])
def test_a_conceding_bag_exports_to_onnx_with_parity(config, randomised):
    from training import export

    model = models.build("conceding", config)
    rng = np.random.default_rng(0)
    for layer in randomised:
        model.get_layer(layer).set_weights([rng.normal(size=model.get_layer(layer).get_weights()[0].shape)])
    tokens = rng.integers(0, config.input_ids, (32, 30), dtype=np.int32)
    tokens[:8, :20] = 0
    scores = model.predict(tokens, verbose=0).reshape(-1)
    assert export.check_parity(export.to_onnx(model, 30), scores, tokens) < 1e-5


def test_a_concession_cap_needs_a_concession_weight_and_a_share_below_one():
    with pytest.raises(ValueError, match="concession_cap needs concession_weight"):
        replace(CAPPED, concession_weight=None)
    with pytest.raises(ValueError, match="concession_cap needs concession_weight"):
        replace(CAPPED, dropout=0.2)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        replace(CAPPED, concession_cap=1.0)


SCOPED = presets.TrainingConfig(family="bag", num_words=300, max_len=30, embedding_dim=4, tokenizer="keras_scopes",
                                ngram_orders=(2,), ngram_buckets_log2=6, ngram_dim=3, scope_prior=True)


def test_a_fresh_scoped_embedding_reads_a_negated_or_outweighed_word_as_the_plain_word():
    model = models.build("scoped", SCOPED)
    table = np.asarray(model.get_layer("word_embedding").table())
    assert table.shape == (4 * 300, 4)
    for block in (1, 2, 3):
        np.testing.assert_array_equal(table[block * 300:(block + 1) * 300], table[:300])


def test_the_scoped_rows_follow_the_map_of_their_block_and_the_residual_is_penalised():
    model = models.build("scoped", SCOPED)
    layer = model.get_layer("word_embedding")
    base, maps, residual = (np.asarray(weight) for weight in layer.get_weights())
    maps[0] = -np.eye(4)  # block 1, negated: the map flips every word
    residual[2, 7] = 0.5  # block 3, negated and outweighed: word 7 has a residual of its own
    layer.set_weights([base, maps, residual])
    table = np.asarray(layer.table())
    np.testing.assert_allclose(table[300:600], -base, atol=1e-7)
    np.testing.assert_allclose(table[900 + 7], base[7] + 0.5, atol=1e-7)
    assert float(sum(np.asarray(loss) for loss in model.losses)) == pytest.approx(SCOPED.scope_residual_l2 * 4 * 0.25)


def test_a_scoped_model_exports_folded_into_one_table_with_the_same_scores():
    from training import export

    model = models.build("scoped", SCOPED)
    layer = model.get_layer("word_embedding")
    rng = np.random.default_rng(3)
    layer.set_weights([rng.normal(size=weight.shape).astype(np.float32) for weight in layer.get_weights()])
    tokens = rng.integers(0, 4 * 300, (16, 30), dtype=np.int32)
    tokens[:4, :20] = 0
    scores = model.predict(tokens, verbose=0).reshape(-1)
    served = models.folded(model, "scoped", SCOPED)
    assert type(served.get_layer("word_embedding")).__name__ == "Embedding"
    assert served.get_layer("word_embedding").input_dim == 4 * 300
    assert export.check_parity(export.to_onnx(served, 30), scores, tokens) < 1e-5
    plain = replace(SCOPED, scope_prior=False)
    unscoped = models.build("plain", plain)
    assert models.folded(unscoped, "plain", plain) is unscoped  # nothing to fold


SALIENT = presets.TrainingConfig(family="bag", num_words=300, max_len=12, embedding_dim=3, ngram_orders=(2,),
                                 ngram_buckets_log2=6, ngram_dim=2, bag_pooling="salience")


def pooled_words(model, tokens):
    """The model's pooled word embedding (the concatenation's first ``embedding_dim`` values) for ``tokens``."""
    import keras

    pooled = keras.Model(model.inputs, model.get_layer("word_weighted_mean").output)
    return pooled.predict(tokens, verbose=0)


def test_a_fresh_salience_bag_pools_a_review_as_the_plain_mean_of_its_words():
    model = models.build("salient", SALIENT)
    table = model.get_layer("word_embedding").get_weights()[0]
    tokens = np.zeros((2, 12), dtype=np.int32)
    tokens[0, -3:] = [1, 7, 9]
    tokens[1, -1] = 5
    np.testing.assert_allclose(pooled_words(model, tokens), [table[[1, 7, 9]].mean(axis=0), table[5]], atol=1e-6)


def test_a_salient_word_outweighs_the_words_beside_it_however_few_they_are():
    model = models.build("salient", SALIENT)
    table = model.get_layer("word_embedding").get_weights()[0]
    salience = model.get_layer("word_salience")
    weights = np.zeros_like(salience.get_weights()[0])
    weights[9] = np.log(8.0)  # word 9 counts as 8 words; padding (id 0) gets a salience that must not count
    weights[0] = 50.0
    salience.set_weights([weights])
    tokens = np.zeros((1, 12), dtype=np.int32)
    tokens[0, -3:] = [1, 7, 9]
    expected = (table[1] + table[7] + 8 * table[9]) / 10
    np.testing.assert_allclose(pooled_words(model, tokens)[0], expected, atol=1e-5)


def test_a_salience_bag_exports_to_onnx_with_parity_and_its_explanation_is_occlusion():
    from artifacts.metadata import logit_is_linear_in_terms
    from training import export

    model = models.build("salient", SALIENT)
    rng = np.random.default_rng(5)
    for layer in ("word_salience", "2gram_salience"):
        model.get_layer(layer).set_weights([rng.normal(0, 3, model.get_layer(layer).get_weights()[0].shape)])
    tokens = rng.integers(0, 300, (16, 12), dtype=np.int32)
    tokens[:4, :9] = 0
    scores = model.predict(tokens, verbose=0).reshape(-1)
    assert export.check_parity(export.to_onnx(model, 12), scores, tokens) < 1e-5
    assert not logit_is_linear_in_terms(SALIENT.to_dict())  # the shares of a word depend on its neighbours
    assert logit_is_linear_in_terms(replace(SALIENT, bag_pooling="mean").to_dict())


def test_the_term_penalty_charges_each_word_occurrence_for_its_row_and_is_not_in_the_export():
    import keras

    config = replace(SALIENT, bag_pooling="mean", term_l1=0.25)
    model = models.build("sparse", config)
    words, bigrams = (model.get_layer(name).get_weights()[0] for name in ("word_embedding", "2gram_embedding"))
    tokens = np.zeros((2, 12), dtype=np.int32)
    tokens[0, -3:] = [1, 7, 7]
    tokens[1, -2:] = [4, 9]
    hashed = keras.Model(model.inputs, model.get_layer("hashed_2grams").output).predict(tokens, verbose=0)

    def mean_norm(table, ids):
        return np.mean([np.abs(table[row[row > 0]]).sum() / max((row > 0).sum(), 1) for row in ids])

    model(tokens, training=True)
    penalties = sorted(float(loss) for loss in model.losses)
    expected = sorted([0.25 * mean_norm(words, tokens), 0.25 * mean_norm(bigrams, hashed)])
    np.testing.assert_allclose(penalties, expected, rtol=1e-5)
    model(tokens, training=False)
    assert model.losses == []  # not in the validation loss
    plain = models.build("plain", replace(config, term_l1=0.0))
    plain(tokens, training=True)
    assert plain.losses == []


def test_the_bag_options_refuse_the_models_they_do_not_apply_to():
    with pytest.raises(ValueError, match="term_l1"):
        replace(SALIENT, term_l1=0.1)  # salience pooling has no mean to penalise
    with pytest.raises(ValueError, match="bag_pooling"):
        presets.TrainingConfig(family="conv1d", bag_pooling="salience")
    with pytest.raises(ValueError, match="made_negations"):
        presets.TrainingConfig(family="bag", made_negations="copies")  # nothing made to negate


def test_a_variant_run_with_more_seeds_is_judged_by_the_mean_of_its_seeds_scores():
    from training.explore_robust import variant_score

    assert variant_score({"choice_score": 0.8}) == 0.8
    assert variant_score({"choice_score": 0.8, "other_seeds": {"1": {"choice_score": 0.7}}}) == pytest.approx(0.75)


def test_a_second_seed_of_a_variant_without_a_first_run_is_refused_before_anything_is_read_or_trained(
        tmp_path, monkeypatch, capsys):
    from training import explore_robust

    monkeypatch.setenv("IMDB_DATA_DIR", str(tmp_path / "no-data-here"))  # reading the data would fail differently
    name = next(iter(explore_robust.CANDIDATES))
    out = tmp_path / "experiments.json"
    out.write_text(json.dumps({"some_other_variant": {}}))
    assert explore_robust.main(["--only", name, "--seed", "7", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: run {name} with its own seed first") and "\n" == error[-1]
    assert json.loads(out.read_text()) == {"some_other_variant": {}}


def test_the_robust_preset_is_the_explored_variant_with_the_best_validation_dev_edited_and_snippet_mean():
    from training.explore_robust import CANDIDATES, choice_score, variant_score

    runs = json.loads((MODELS_DIR / "robust_experiments.json").read_text())
    judged = {name: run for name, run in runs.items() if "val_snippets" in run}  # the rule's three figures
    assert len(judged) >= 2
    for run in judged.values():
        for seed_run in (run, *run.get("other_seeds", {}).values()):
            assert seed_run["choice_score"] == pytest.approx(
                (seed_run["best_val_accuracy"] + seed_run["cad_dev_edited"] + seed_run["val_snippets"]) / 3,
                abs=1e-12)
            assert choice_score(seed_run) == pytest.approx(seed_run["choice_score"], abs=1e-12)
    best = max(judged, key=lambda name: variant_score(judged[name]))  # the mean over a variant's seeds
    # the exploration trained each variant once, for at most 12 epochs; the preset gets the pipeline's seeds and epochs
    shipped = replace(presets.get("robust_bag"), epochs=CANDIDATES[best].epochs, seeds=CANDIDATES[best].seeds)
    assert shipped.to_dict() == CANDIDATES[best].to_dict()


ROUTED = replace(CONCEDING, max_len=150, short_text_words=5, short_text_cad_sentences=0)


def random_weights(model, seed: int):
    """``model`` with every weight drawn at random, so that two models of one configuration score apart."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, weight.shape).astype(np.float32) for weight in model.get_weights()])
    return model


def rows_of(words: list[int], length: int) -> np.ndarray:
    """The tokenizer's row for a text of ``words``: START and the ids, padded at the front."""
    row = np.zeros((1, length), np.int32)
    row[0, length - len(words) - 1:] = [1, *words]
    return row


def test_a_routed_model_reads_a_short_text_with_its_short_text_bag_and_a_longer_one_with_the_whole_review_bag():
    whole = random_weights(models.build("whole", ROUTED.whole_reviews), 1)
    short = random_weights(models.build("short", ROUTED.short_texts), 2)
    assert ROUTED.short_texts.max_len == presets.SHORT_TEXT_MAX_LEN < ROUTED.max_len
    routed = models.assemble("routed", ROUTED, whole, short)
    for words, read_short in (([17, 40, 41, 2, 299], True), ([17, 40, 41, 2, 299, 40], False), ([], True)):
        row = rows_of(words, ROUTED.max_len)
        by_short = short.predict(row[:, -presets.SHORT_TEXT_MAX_LEN:], verbose=0)
        by_whole = whole.predict(row, verbose=0)
        assert abs(float(by_short[0, 0]) - float(by_whole[0, 0])) > 1e-3  # the two bags score it apart
        np.testing.assert_allclose(routed.predict(row, verbose=0), by_short if read_short else by_whole, atol=1e-6)
    assert models.describe(routed)[-1]["type"] == "Activation"  # the score is the sigmoid of the chosen logit


def test_a_routed_model_exports_to_one_onnx_graph_with_parity_whose_logit_calibration_can_read():
    from training import calibrate, export

    routed = models.assemble("routed", ROUTED, random_weights(models.build("whole", ROUTED.whole_reviews), 3),
                             random_weights(models.build("short", ROUTED.short_texts), 4))
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, ROUTED.input_ids, (24, ROUTED.max_len), dtype=np.int32)
    for i, words in enumerate(range(0, 24 * 4, 4)):  # 0 to 92 words: either side of the route
        tokens[i, :ROUTED.max_len - words - 1] = 0
        tokens[i, ROUTED.max_len - words - 1] = 1
    scores = routed.predict(tokens, verbose=0).reshape(-1)
    onnx_bytes = export.to_onnx(routed, ROUTED.max_len)
    assert export.check_parity(onnx_bytes, scores, tokens) < 1e-5
    logits = calibrate.logits(onnx_bytes, tokens)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), scores, atol=1e-5)


def test_the_route_needs_a_bag_and_a_length_the_short_text_bag_reads_whole():
    with pytest.raises(ValueError, match="applies to the bag family"):
        replace(presets.get("conv1d"), short_text_words=40)
    with pytest.raises(ValueError, match=r"must be in \(0, 128\)"):
        replace(ROUTED, short_text_words=128)
    with pytest.raises(ValueError, match=r"must be in \(0, 30\)"):
        replace(ROUTED, max_len=30, short_text_words=30)
    with pytest.raises(ValueError, match="needs counterfactual_copies"):
        replace(ROUTED, short_text_cad_sentences=8)
