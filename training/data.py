"""Reader for the Large Movie Review Dataset v1.0 (Maas et al., 2011).

Accepts the extracted ``aclImdb/`` folder (or a folder containing it) or the ``.tar.gz`` archive,
read in place. Labels come from the ``pos/`` and ``neg/`` folders: 1 = positive, 0 = negative.
Reviews are returned sorted by file name so every run sees the same order.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
SPLITS = ("train", "test")
LABELS = {"neg": 0, "pos": 1}
# aclImdb/{train,test}/{pos,neg}/{id}_{rating}.txt, possibly below a leading folder
_REVIEW_PATH = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
EXPECTED_LAYOUT = "aclImdb/{train,test}/{pos,neg}/{id}_{rating}.txt"


class DataError(Exception):
    """The data path does not hold the dataset in its standard layout."""


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    ratings: list[int]  # the reviewer's 1-10 stars, from the file name

    def __len__(self) -> int:
        return len(self.texts)


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


def download(url: str, destination: Path, timeout: float = 60.0) -> Path:
    """Fetch the dataset archive to ``destination`` unless it is already there."""
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
    partial.replace(destination)
    return destination


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
