"""Where the IMDB data is, and the reader for the Large Movie Review Dataset v1.0 (Maas et al., 2011).

One setting finds the data for training (``python -m training``, ``python -m training.explore``) and the
benchmarks (``python -m benchmarks``): the folder named by the environment variable ``IMDB_DATA_DIR``;
without it, the first of ``data/`` (in the repository) and ``../shared/data`` (beside the repository)
that holds both files, else ``data/``. The folder holds

* the dataset archive, ``aclImdb_v1_labeled.tar.gz`` (the labelled reviews only) or the official
  ``aclImdb_v1.tar.gz``, the first that is there;
* the Keras IMDB word index, ``imdb_word_index.json``.

``make data`` (``python -m training.fetch_data``) fills ``data/``. The command lines' ``--data`` and
``--word-index`` still name other files.

The reader accepts the extracted ``aclImdb/`` folder (or a folder containing it) or the ``.tar.gz``
archive, read in place. Labels come from the ``pos/`` and ``neg/`` folders: 1 = positive, 0 = negative.
Reviews are returned sorted by file name so every run sees the same order.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "IMDB_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIRS = (REPO_ROOT / "data", REPO_ROOT.parent / "shared" / "data")  # in this order
LABELED_ARCHIVE = "aclImdb_v1_labeled.tar.gz"
OFFICIAL_ARCHIVE = "aclImdb_v1.tar.gz"
DATASET_FILES = (LABELED_ARCHIVE, OFFICIAL_ARCHIVE)  # the first that is there
WORD_INDEX_FILE = "imdb_word_index.json"
OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
# md5 of the files whose published checksum is known: the official archive (as torchtext and paddle check
# it) and the word index (as keras.datasets.imdb.get_word_index checks it).
MD5 = {
    OFFICIAL_ARCHIVE: "7c2ac02c03563afcf9b574c7e56c153a",
    WORD_INDEX_FILE: "bfafd718b763782e994055a2d397834f",
}
CAD_FOLDER = "cad"  # the counterfactual pairs (training/cad.py)
CAD_SPLIT_FILES = {"train": "train_paired.tsv", "dev": "dev_paired.tsv"}
HOW_TO_GET_DATA = f"run `make data`, or set {DATA_DIR_ENV} to a folder that has the files"

SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
# aclImdb/{train,test}/{pos,neg}/{id}_{rating}.txt, possibly below a leading folder
_REVIEW_PATH = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
EXPECTED_LAYOUT = "aclImdb/{train,test}/{pos,neg}/{id}_{rating}.txt"


class DataError(Exception):
    """The data is missing, cannot be fetched, or is not in the dataset's standard layout."""


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    ratings: list[int]  # the reviewer's 1-10 stars, from the file name

    def __len__(self) -> int:
        return len(self.texts)


def data_dir() -> Path:
    """The data folder: ``IMDB_DATA_DIR`` when it is set, else the first of ``DEFAULT_DATA_DIRS`` that
    has both files, else the first of them (``data/``, where ``make data`` puts them)."""
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        return Path(configured)
    return next((folder for folder in DEFAULT_DATA_DIRS if _has_data(folder)), DEFAULT_DATA_DIRS[0])


def dataset_path(folder: Path | None = None) -> Path:
    """The dataset archive in ``folder`` (default: ``data_dir()``): the first of ``DATASET_FILES`` that
    is there, else the first name, so a message about it names the file to provide."""
    folder = data_dir() if folder is None else folder
    return next((folder / name for name in DATASET_FILES if (folder / name).is_file()), folder / DATASET_FILES[0])


def word_index_path(folder: Path | None = None) -> Path:
    """The Keras word index in ``folder`` (default: ``data_dir()``)."""
    return (data_dir() if folder is None else folder) / WORD_INDEX_FILE


def require_data_file(path: Path) -> Path:
    """``path``, a file the data setting chose; a one-line DataError that names the setting when it is missing."""
    if path.exists():
        return path
    configured = os.environ.get(DATA_DIR_ENV)
    if configured:
        where = f"in {DATA_DIR_ENV}={configured}"
    else:
        where = f"in {' or '.join(map(str, DEFAULT_DATA_DIRS))} ({DATA_DIR_ENV} is not set)"
    what = " or ".join(DATASET_FILES) if path.name in DATASET_FILES else path.name
    raise DataError(f"{what} not found {where}: {HOW_TO_GET_DATA}")


def _has_data(folder: Path) -> bool:
    return (folder / WORD_INDEX_FILE).is_file() and any((folder / name).is_file() for name in DATASET_FILES)


def load_imdb(path: str | Path) -> dict[str, Split]:
    """Both splits of the dataset at ``path`` (archive or folder)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {path} does not exist; expected aclImdb_v1.tar.gz or an aclImdb/ folder")
    records = _read_archive(path) if path.is_file() else _read_folder(path)
    splits = {name: Split([], [], []) for name in SPLITS}
    for (split, _, _), (text, label, rating) in sorted(records.items()):
        splits[split].texts.append(text)
        splits[split].labels.append(label)
        splits[split].ratings.append(rating)
    missing = [name for name, split in splits.items() if not split.texts]
    if missing:
        raise DataError(f"{path} has no {' or '.join(missing)} reviews; expected {EXPECTED_LAYOUT}")
    for name, split in splits.items():
        if len(set(split.labels)) < 2:
            raise DataError(f"{path}: the {name} split has only one class; expected both pos/ and neg/")
    return splits


def download(url: str, destination: Path, timeout: float = 60.0, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``destination`` unless it is already there. With ``md5``, a download whose
    checksum differs is deleted and raises DataError; ``destination`` only ever holds a checked file."""
    if destination.exists() and destination.stat().st_size > 0:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DataError(f"could not download {url}: {error}") from None
    check_md5(partial, md5, source=url)
    partial.replace(destination)
    return destination


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, expected: str | None, source: str | Path) -> None:
    """Nothing when ``expected`` is None or matches; otherwise deletes ``path`` and raises DataError."""
    if expected is None:
        return
    actual = file_md5(path)
    if actual != expected:
        path.unlink(missing_ok=True)
        raise DataError(f"{source}: md5 {actual} is not the expected {expected}; the file was deleted")


def _parse(name: str) -> tuple[tuple[str, str, int], int] | None:
    """((split, label folder, review id), rating) for a review file's path, else None."""
    match = _REVIEW_PATH.search(name.replace("\\", "/"))
    if match is None:
        return None
    split, label, review_id, rating = match.groups()
    return (split, label, int(review_id)), int(rating)


def _read_archive(path: Path) -> dict[tuple[str, str, int], tuple[str, int, int]]:
    records = {}
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                parsed = _parse(member.name) if member.isfile() else None
                if parsed is None:
                    continue
                (key, rating), raw = parsed, archive.extractfile(member).read()
                records[key] = (raw.decode("utf-8", errors="replace"), LABELS[key[1]], rating)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{path} is not a readable tar archive ({error}); expected aclImdb_v1.tar.gz") from None
    return records


def _read_folder(path: Path) -> dict[tuple[str, str, int], tuple[str, int, int]]:
    root = path if path.name == "aclImdb" else path / "aclImdb"
    if not root.is_dir():
        raise DataError(f"{path} has no aclImdb/ folder; expected {EXPECTED_LAYOUT}")
    records = {}
    for file in root.glob("*/*/*.txt"):
        parsed = _parse(file.relative_to(root.parent).as_posix())
        if parsed is not None:
            key, rating = parsed
            records[key] = (file.read_bytes().decode("utf-8", errors="replace"), LABELS[key[1]], rating)
    return records
