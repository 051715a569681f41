"""Word index files: the Keras IMDB word index (word -> rank) and the per-model subsets that
training writes beside each model and the service reads back."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

INDEX_FROM = 3  # Keras reserves indices 0..2, so rank r becomes index r + 3


def vocabulary_subset(word_index: Mapping[str, int], num_words: int) -> dict[str, int]:
    """The words a model with ``num_words`` can see, ordered by rank."""
    kept = [(word, rank) for word, rank in word_index.items() if rank + INDEX_FROM < num_words]
    return dict(sorted(kept, key=lambda item: item[1]))


def load_word_index(path: str | Path) -> dict[str, int]:
    """Read a Keras-format word index (JSON object word -> rank), validating its shape."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"vocabulary file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"vocabulary file {path} must be a non-empty JSON object word -> rank")
    for word, rank in data.items():
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"vocabulary file {path}: rank of {word!r} must be a positive integer")
    return data


def save_word_index(word_index: Mapping[str, int], path: str | Path) -> str:
    """Write a word index deterministically and return its sha256."""
    path = Path(path)
    path.write_text(json.dumps(word_index, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return file_sha256(path)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
