"""IMDB sentiment inference service (FastAPI + onnxruntime)."""
