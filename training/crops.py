"""Short crops of training reviews: a sentence or two cut from a review and labelled by it.

People type a sentence or two; IMDB reviews run to 230 words on average. A model fitted only on whole reviews
reads a short text through weights tuned for long averages: the bag model scored "The script was original."
0.001, because "was" leans negative over thousands of reviews and nothing in a five-word text outweighs it.
Crops give the model short texts with the label of the review they came from. The label is noisy (a crop of a
positive review can be neutral or even negative), which is the point: short, plain texts should score less
sure than long ones.

Each crop keeps the index of its review, so a crop of a held-out review is held out with it
(``training.fit.split_shuffled``).

The sentences the editors of the counterfactual pairs changed (``edited_sentences``) are short texts whose label
is not noise: a sentence rewritten to flip a review carries the review's sentiment before the edit and the other
after it ("The film was never boring." from "The film was boring throughout."), in the editors' words.
"""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

import numpy as np

from artifacts.tokenizer import text_to_words
from training.cad import CadPair, Review
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


def edited_sentences(pairs: Sequence[CadPair]) -> list[Review]:
    """The sentences each pair's editor changed, from both reviews, each with its review's label: a changed
    sentence with the original's, its rewrite with the edited copy's (paired by position where the editor rewrote
    as many sentences as there were; a run of sentences rewritten into another count is one text each side, and a
    sentence only added or only removed stands alone). Sentences left as they were carry nothing of the flip and
    are left out, and so are a sentence and its rewrite that read the same words (``text_to_words``: a capital
    letter or a quote mark changed), which would give the model one text under both labels."""
    found: list[Review] = []
    for pair in pairs:
        before, after = sentences(pair.original.text), sentences(pair.edited.text)
        for operation, i1, i2, j1, j2 in SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
            if operation == "equal":
                continue
            if i2 - i1 == j2 - j1:
                changed = list(zip(before[i1:i2], after[j1:j2], strict=True))
            else:
                changed = [(" ".join(before[i1:i2]), " ".join(after[j1:j2]))]
            for old, new in changed:
                if text_to_words(old) == text_to_words(new):
                    continue
                if old:
                    found.append(Review(old, pair.original.label))
                if new:
                    found.append(Review(new, pair.edited.label))
    return found
