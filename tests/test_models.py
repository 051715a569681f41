import numpy as np
import pytest

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
                                             ("conv_lstm_tuned", "conv_gru_adam_dropout")])
def test_shipped_presets_are_the_explored_winners(tuned, explored):
    from dataclasses import replace

    from training.explore import CANDIDATES

    assert replace(presets.get(tuned), seeds=CANDIDATES[explored].seeds) == CANDIDATES[explored]
    assert presets.get(tuned).family == presets.get(tuned.removesuffix("_tuned")).family
