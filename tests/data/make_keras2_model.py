"""Writes ``course_conv1d_keras2.h5`` and ``course_conv1d_keras2.json``: the course's 1D convnet, small, compiled
as the course's listing compiles it (rmsprop, ``binary_crossentropy`` on the bare ``Dense(1)`` output, accuracy),
trained for one step and saved by Keras 2 (``tf_keras``, the writer of tf.keras and of R's ``save_model_hdf5``),
and its outputs on eight token rows as Keras 2 computed them. ``tests/test_import_model.py`` imports the file with
Keras 3 and checks the served scores against those outputs.

tf-keras is not in the requirements (it depends on ``tensorflow``, which would install beside the pinned
``tensorflow-cpu``), so this script ran once, with tf-keras installed on its own::

    pip install --no-deps --target /tmp/tfk tf-keras==2.21.0
    PYTHONPATH=/tmp/tfk .venv/bin/python tests/data/make_keras2_model.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

HERE = Path(__file__).resolve().parent
NUM_WORDS, MAX_LEN = 500, 80

keras.utils.set_random_seed(2011)
# The course's listing (R): layer_embedding(input_dim = max_features, output_dim = 128, input_length = maxlen) %>%
# layer_conv_1d(32, 7, activation = "relu") %>% layer_max_pooling_1d(5) %>% layer_conv_1d(32, 7, activation = "relu")
# %>% layer_global_max_pooling_1d() %>% layer_dense(units = 1), with smaller dimensions.
model = keras.Sequential([
    layers.Embedding(NUM_WORDS, 16, input_length=MAX_LEN),
    layers.Conv1D(8, 7, activation="relu"),
    layers.MaxPooling1D(5),
    layers.Conv1D(8, 7, activation="relu"),
    layers.GlobalMaxPooling1D(),
    layers.Dense(1),
])
model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])  # as R: loss = "binary_crossentropy"
rng = np.random.default_rng(2011)
model.fit(rng.integers(1, NUM_WORDS, (64, MAX_LEN)), rng.integers(0, 2, 64), epochs=1, verbose=0)
# Weights that give outputs around 0.5, some beyond 0 and 1, as such a model's outputs are (the loss reads them as
# probabilities, clipped), so that a sigmoid, or no clipping, cannot pass for the right scores.
for layer, scale in zip(model.layers, (1.0, 0.3, 0, 0.3, 0, 1.0), strict=True):
    if scale:
        kernel, bias = layer.get_weights() if len(layer.get_weights()) == 2 else (*layer.get_weights(), None)
        weights = [rng.normal(0, scale, kernel.shape).astype("float32")]
        layer.set_weights(weights + ([rng.normal(0, 0.1, bias.shape).astype("float32")] if bias is not None else []))
tokens = np.zeros((8, MAX_LEN), np.int32)
for row, length in zip(tokens, (1, 5, 20, 40, 60, 79, 80, 80), strict=True):
    row[MAX_LEN - length:] = rng.integers(2, NUM_WORDS, length)
    row[MAX_LEN - length] = 1  # the start token
dense = model.layers[-1]
kernel, bias = dense.get_weights()
raw = model.predict(tokens, verbose=0).reshape(-1) - bias[0]
spread = 0.6 / raw.std()  # then the outputs are centred on 0.5 with a spread of about 0.6
dense.set_weights([kernel * spread, np.array([0.5 - spread * np.median(raw)], "float32")])
outputs = model.predict(tokens, verbose=0).reshape(-1)
model.save(HERE / "course_conv1d_keras2.h5")
(HERE / "course_conv1d_keras2.json").write_text(json.dumps({
    "keras_version": keras.__version__, "num_words": NUM_WORDS, "max_len": MAX_LEN, "tokens": tokens.tolist(),
    "outputs": outputs.astype(float).tolist()}) + "\n")
print(keras.__version__, outputs)
