"""A model's tokenizer, from its metadata: the one way the service, benchmarks and tests build it."""

from __future__ import annotations

from pathlib import Path

from artifacts.metadata import MetadataError, ModelMetadata
from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import file_sha256, load_word_index


def load_tokenizer(metadata: ModelMetadata, model_dir: str | Path, cache: dict | None = None) -> Tokenizer:
    """The tokenizer the model was trained with: its vocabulary file (checked against the checksum in
    the metadata), vocabulary size, sequence length and rule. Models with the same four share one
    Tokenizer through ``cache``, so a comparison of several models tokenizes once. MetadataError
    names the file when the vocabulary is missing, corrupt or not the one the model was trained with."""
    path = Path(model_dir) / metadata.vocabulary.file
    key = (path, metadata.num_words, metadata.max_len, metadata.tokenizer)
    if cache is not None and key in cache:
        return cache[key]
    if not path.is_file():
        raise MetadataError(f"{path}: vocabulary file named in {metadata.name}.json is missing")
    if file_sha256(path) != metadata.vocabulary.sha256:
        raise MetadataError(f"{path}: sha256 does not match the vocabulary checksum in {metadata.name}.json")
    try:
        tokenizer = Tokenizer(load_word_index(path), metadata.num_words, metadata.max_len, metadata.tokenizer)
    except ValueError as error:
        raise MetadataError(str(error)) from None
    if cache is not None:
        cache[key] = tokenizer
    return tokenizer
