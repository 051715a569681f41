import numpy as np
import pytest

from training import models

COURSE_SHAPES = {
    "conv1d": ([None, 494, 32], [None, 98, 32], [None, 92, 32], [None, 32], [None, 1]),
    "conv_lstm": ([None, 496, 32], [None, 165, 32], [None, 161, 32], [None, 32], [None, 1]),
}
COURSE_PARAMETERS = {"conv1d": 1_315_937, "conv_lstm": 1_314_017}


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_architecture_matches_the_course(name):
    model = models.build(name, num_words=10_000, max_len=500)
    assert model.count_params() == COURSE_PARAMETERS[name]
    layers = models.describe(model)
    assert layers[0]["output_shape"] == [None, 500, 128]
    assert tuple(layer["output_shape"] for layer in layers[1:]) == COURSE_SHAPES[name]
    assert model.inputs[0].dtype == "int32"
    assert model.layers[-1].activation.__name__ == "sigmoid"


@pytest.mark.parametrize("name", ["conv1d", "conv_lstm"])
def test_outputs_are_probabilities(name):
    model = models.build(name, num_words=10_000, max_len=500)
    scores = model.predict(np.random.default_rng(0).integers(0, 10_000, (4, 500), dtype=np.int32), verbose=0)
    assert scores.shape == (4, 1) and ((scores > 0) & (scores < 1)).all()


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="unknown model 'gru'; choose from conv1d, conv_lstm"):
        models.build("gru", 10_000, 500)
