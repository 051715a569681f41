"""The naive baseline: what most tutorials do. Loads the Keras model and calls ``model.predict``
once per request, in FastAPI's thread pool. Only the benchmark runs it.

    NAIVE_MODEL=conv1d uvicorn benchmarks.naive_server:app --port 8001
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from artifacts.loading import load_tokenizer  # noqa: E402
from artifacts.metadata import read_metadata  # noqa: E402
from training import models, presets  # noqa: E402

MODEL_DIR = Path(os.environ.get("NAIVE_MODEL_DIR", "models"))
NAME = os.environ.get("NAIVE_MODEL", "conv1d")
metadata = read_metadata(MODEL_DIR / f"{NAME}.json")
model = models.build(NAME, presets.get(NAME))
model.load_weights(MODEL_DIR / "keras" / f"{NAME}.weights.h5")
tokenizer = load_tokenizer(metadata, MODEL_DIR)
app = FastAPI()


class Body(BaseModel):
    reviews: list[str]


@app.post("/predict")
def predict(body: Body):
    scores = model.predict(tokenizer.encode_batch(body.reviews), verbose=0).reshape(-1)
    return {"results": [{"model": NAME, "predictions": [
        {"score": float(score), "label": "positive" if score >= 0.5 else "negative"} for score in scores]}]}
