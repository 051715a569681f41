"""Keras -> ONNX export with tf2onnx, guarded by an onnxruntime parity check.

``tf2onnx.convert.from_keras`` is fragile with Keras 3 (``KeyError: 'keras_tensor_N'``), so the
model is wrapped in a ``tf.function`` with an explicit int32 signature and converted from that.

The converted graph is then rewritten by ``training.fold.rewrite`` (issue #18): an Embedding -> Conv1D is folded
into per-tap tables and a GRU's Loop becomes ONNX's GRU operator, exact rewrites that leave the scores within
1e-5 (checked there on random rows, and against Keras by ``check_parity``) and make the conv models several times
faster. ``rewrite=False`` gives tf2onnx's graph as it is.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from training import fold

OPSET = 17
PARITY_TOLERANCE = 1e-5
INPUT_NAME = "tokens"


class ParityError(Exception):
    """The ONNX model does not reproduce the Keras model's scores."""


def to_onnx(model, max_len: int, rewrite: bool = True) -> bytes:
    """The model as ONNX bytes (input ``tokens``, int32 [batch, max_len]), with ``training.fold``'s exact rewrites
    applied unless ``rewrite`` is False."""
    signature = (tf.TensorSpec((None, max_len), tf.int32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def score(tokens):
        return model(tokens, training=False)

    proto, _ = tf2onnx.convert.from_function(score, input_signature=signature, opset=OPSET)
    onnx_bytes = proto.SerializeToString()
    return fold.rewrite(onnx_bytes).onnx_bytes if rewrite else onnx_bytes


def onnx_scores(onnx_bytes: bytes, tokens: np.ndarray, batch_size: int = 256) -> np.ndarray:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    chunks = [
        session.run(None, {input_name: tokens[start:start + batch_size].astype(np.int32)})[0]
        for start in range(0, len(tokens), batch_size)
    ]
    return np.concatenate(chunks).reshape(-1)


def check_parity(onnx_bytes: bytes, keras_scores: np.ndarray, tokens: np.ndarray) -> float:
    """Max absolute difference between ONNX and Keras scores; raises above the tolerance."""
    difference = float(np.max(np.abs(onnx_scores(onnx_bytes, tokens) - keras_scores.reshape(-1))))
    if not difference <= PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX scores differ from Keras by {difference:.3g} on {len(tokens)} reviews "
            f"(tolerance {PARITY_TOLERANCE}); the export is not written"
        )
    return difference
