"""IMDB sentiment training pipeline (TensorFlow, Keras, tf2onnx). The service never imports it: what
training and serving share lives in the ``artifacts`` package."""
