"""Short crops of training reviews: a sentence or two cut from a review and labelled by it.

People type a sentence or two; IMDB reviews run to 230 words on average. A model fitted only on whole reviews
reads a short text through weights tuned for long averages: the bag model scored "The script was original."
0.001, because "was" leans negative over thousands of reviews and nothing in a five-word text outweighs it.
Crops give the model short texts with the label of the review they came from. The label is noisy (a crop of a
positive review can be neutral or even negative), which is the point: short, plain texts should score less
sure than long ones.

Each crop keeps the index of its review, so a crop of a held-out review is held out with it
(``training.fit.split_shuffled``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.robustness import sentences

# A crop is one sentence (two thirds of the time) or two adjacent ones.
CROP_SENTENCES = (1, 2)
CROP_SENTENCE_WEIGHTS = (2 / 3, 1 / 3)
CROP_SEED = 20_161  # crops do not depend on the training seed: every run of a preset fits the same reviews


def sentence_crops(texts: Sequence[str], labels: Sequence[float], per_review: int, seed: int = CROP_SEED
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Up to ``per_review`` crops of each review with at least three sentences (of shorter ones a crop would be
    most of the review): their texts, their reviews' labels (float32) and the index of the review each came
    from (int64). Two crops of one review may coincide."""
    rng = np.random.default_rng(seed)
    crop_texts: list[str] = []
    crop_labels: list[float] = []
    sources: list[int] = []
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        parts = sentences(text)
        if len(parts) < 3 or per_review < 1:
            continue
        lengths = rng.choice(CROP_SENTENCES, size=per_review, p=CROP_SENTENCE_WEIGHTS)
        for length in lengths:
            start = int(rng.integers(0, len(parts) - length + 1))
            crop_texts.append(" ".join(parts[start:start + length]))
            crop_labels.append(float(label))
            sources.append(index)
    return crop_texts, np.asarray(crop_labels, np.float32), np.asarray(sources, np.int64)
