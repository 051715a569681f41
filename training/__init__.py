"""IMDB sentiment training pipeline. Keep this package import free of TensorFlow: the service imports
``training.tokenizer``."""
