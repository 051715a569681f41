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

Joined by a contrast (``contrast_joins``), two such sentences of opposite labels make a text whose label English
gives to its second part: "The plot is thin, but the cast is wonderful" is positive, "Although the cast is
wonderful, the plot is thin" negative. IMDB's reviews do not teach this: in a long review the words before a "but"
say as much about its label as the words after it, so the rows a contrast outweighs (``artifacts/tokenizer.py``
``OUTWEIGHED``) learn to pull as hard as the plain ones.
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
JOIN_SEED = 20_162  # nor do contrast joins
# The two ways of joining, the conceded sentence first and last: "A, but B" and "Although A, B", labelled as B.
JOIN_BUT, JOIN_ALTHOUGH = "{conceded}, but {said}", "Although {conceded}, {said}"


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


def _one_clause(text: str) -> str | None:
    """``text`` as the clause of a joined text: one sentence, its end mark left out and its first letter
    lower-cased unless its word is "I" or an acronym; None when it has more than one sentence."""
    parts = sentences(text)
    if len(parts) != 1:
        return None
    clause = parts[0].rstrip(".!?;: ")
    first = clause.split(maxsplit=1)[0] if clause else ""
    if not first or first == "I" or first.startswith("I'") or (len(first) > 1 and first.isupper()):
        return clause
    return clause[0].lower() + clause[1:]


def contrast_joins(sentences_: Sequence[Review], count: int, seed: int = JOIN_SEED) -> list[Review]:
    """``count`` texts, each two of ``sentences_`` of opposite labels joined by a contrast and labelled by the one
    the contrast says: alternately ``JOIN_BUT`` ("A, but B") and ``JOIN_ALTHOUGH`` ("Although A, B"), the said
    sentence drawn at random, the conceded one at random among those of the other label. Only one-sentence texts
    are joined, and after "although" only those without a comma, whose whole clause the tokenizer then reads as
    conceded. Empty when either label has no such sentence."""
    clauses = [(clause, review.label) for review in sentences_ if (clause := _one_clause(review.text))]
    conceded = {(label, template): [clause for clause, other in clauses
                                    if other == label and (template == JOIN_BUT or "," not in clause)]
                for label in (0, 1) for template in (JOIN_BUT, JOIN_ALTHOUGH)}
    if count < 1 or not all(conceded.values()):
        return []
    rng = np.random.default_rng(seed)
    joined: list[Review] = []
    for number in range(count):
        said, label = clauses[int(rng.integers(len(clauses)))]
        template = (JOIN_BUT, JOIN_ALTHOUGH)[number % 2]
        choices = conceded[1 - label, template]
        text = template.format(conceded=choices[int(rng.integers(len(choices)))], said=said)
        joined.append(Review(text[0].upper() + text[1:] + ".", label))
    return joined
