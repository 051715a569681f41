"""The counterfactually-augmented IMDb reviews (Kaushik, Hovy and Lipton, ICLR 2020; Apache 2.0).

``cad/`` in the data folder (``training/data.py: data_dir``) holds ``train_paired.tsv`` (1,707 pairs) and
``dev_paired.tsv`` (245 pairs): tab-separated, header ``Sentiment  Text  batch_id``, no quoting (each line is
split at its tabs; a review may start with a quote mark), the two rows that share a ``batch_id`` one pair: an
IMDB **training** review and a copy edited as little as possible so that its sentiment flips.

The files do not say which row is the original: it is the one whose words (``text_to_words``, so markup and
quoting do not matter) are those of an IMDB training review. A pair where that is not exactly one of the two
is skipped and counted (``CadSet.skipped``), never dropped silently.

Use: the training pairs for training, the dev pairs for choosing; the dev pairs' originals are left out of the
training reviews so that the dev figures measure reviews no model saw. Never an IMDB test-set claim.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from artifacts.tokenizer import text_to_words
from training.data import CAD_FOLDER, DataError, data_dir
from training.data import CAD_SPLIT_FILES as SPLIT_FILES

HEADER = ["Sentiment", "Text", "batch_id"]
SENTIMENTS = {"Negative": 0, "Positive": 1}


@dataclass(frozen=True)
class Review:
    text: str
    label: int  # 1 positive, 0 negative


@dataclass(frozen=True)
class CadPair:
    pair_id: str
    original: Review
    edited: Review  # the minimally edited copy, with the other label
    train_index: int  # the original's position among the IMDB training reviews (training/data.py's order)


@dataclass(frozen=True)
class CadSet:
    pairs: list[CadPair]
    skipped: list[str]  # pair ids whose original is not exactly one IMDB training review


def cad_path(split: str, folder: Path | None = None) -> Path:
    """``cad/<split file>`` in ``folder`` (default: the data folder)."""
    return (data_dir() if folder is None else folder) / CAD_FOLDER / SPLIT_FILES[split]


def read_rows(path: Path) -> dict[str, list[Review]]:
    """The file's reviews grouped by pair id, in file order; DataError names the line of a malformed row."""
    if not path.is_file():
        raise DataError(f"{path} not found: the counterfactual reviews (cad/) belong in the data folder")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t") != HEADER:
        raise DataError(f"{path}: the first line must be the header {' '.join(HEADER)!r}")
    groups: dict[str, list[Review]] = defaultdict(list)
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(HEADER) or fields[0] not in SENTIMENTS:
            raise DataError(f"{path}:{number}: expected Positive|Negative, a review and a batch id, separated by tabs")
        sentiment, text, pair_id = fields
        groups[pair_id].append(Review(text, SENTIMENTS[sentiment]))
    return groups


def load_cad(split: str, imdb_train_texts: list[str], folder: Path | None = None) -> CadSet:
    """The pairs of one split (``train`` or ``dev``), each original found among ``imdb_train_texts``."""
    path = cad_path(split, folder)
    position = {tuple(text_to_words(text)): index for index, text in enumerate(imdb_train_texts)}
    pairs, skipped = [], []
    for pair_id, reviews in read_rows(path).items():
        found = [position.get(tuple(text_to_words(review.text))) for review in reviews]
        originals = [i for i, index in enumerate(found) if index is not None]
        if len(reviews) != 2 or len(originals) != 1 or reviews[0].label == reviews[1].label:
            skipped.append(pair_id)
            continue
        original, edited = reviews[originals[0]], reviews[1 - originals[0]]
        pairs.append(CadPair(pair_id, original, edited, found[originals[0]]))
    if not pairs:
        raise DataError(f"{path}: no pair has an original among the IMDB training reviews")
    return CadSet(pairs, skipped)
