"""Fill the data folder that training and the benchmarks read (``make data``).

    python -m training.fetch_data [--dest DIR] [--source DIR]

The folder is ``IMDB_DATA_DIR`` when it is set, else ``data/`` in the repository (``training/data.py``).
Each of its files, the dataset archive, the Keras word index and the counterfactual pairs (``cad/``,
``training/cad.py``), that it does not have yet is copied from ``--source`` (``../shared/data`` beside the
repository) when that folder has it, and downloaded otherwise: the official archive from Stanford, the word
index from Keras's bucket, the pairs from the authors' repository. A file with a published
checksum (``training.data.MD5``) is checked before it takes its place; one that does not match is deleted
and the command fails with one line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from training.data import (
    CAD_FOLDER,
    CAD_SPLIT_FILES,
    DATA_DIR_ENV,
    DEFAULT_DATA_DIRS,
    MD5,
    OFFICIAL_ARCHIVE,
    OFFICIAL_URL,
    WORD_INDEX_FILE,
    WORD_INDEX_URL,
    DataError,
    check_md5,
    dataset_path,
    download,
)

DEFAULT_DESTINATION = DEFAULT_DATA_DIRS[0]  # data/
DEFAULT_SOURCE = DEFAULT_DATA_DIRS[1]  # ../shared/data


def copy(source: Path, destination: Path) -> Path:
    """``source`` copied to ``destination`` through a temporary file, checked first when its name has a
    published checksum."""
    partial = destination.with_name(destination.name + ".part")
    try:
        shutil.copyfile(source, partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise DataError(f"could not copy {source}: {error}") from None
    check_md5(partial, MD5.get(destination.name), source=source)
    partial.replace(destination)
    return destination


def fetch_dataset(destination: Path, source: Path, url: str) -> str:
    """The dataset archive in ``destination``; returns where it came from."""
    if dataset_path(destination).is_file():
        return f"{dataset_path(destination)}: already there"
    if dataset_path(source).is_file():
        shared = dataset_path(source)
        copy(shared, destination / shared.name)
        checked = ", md5 checked" if shared.name in MD5 else ""
        return f"{destination / shared.name}: copied from {shared}{checked}"
    print(f"downloading {url} ...", flush=True)
    download(url, destination / OFFICIAL_ARCHIVE, md5=MD5[OFFICIAL_ARCHIVE])
    return f"{destination / OFFICIAL_ARCHIVE}: downloaded from {url}, md5 checked"


def fetch_word_index(destination: Path, source: Path, url: str) -> str:
    """The Keras word index in ``destination``; returns where it came from."""
    target = destination / WORD_INDEX_FILE
    if target.is_file():
        return f"{target}: already there"
    if (source / WORD_INDEX_FILE).is_file():
        copy(source / WORD_INDEX_FILE, target)
        return f"{target}: copied from {source / WORD_INDEX_FILE}, md5 checked"
    print(f"downloading {url} ...", flush=True)
    download(url, target, md5=MD5[WORD_INDEX_FILE])
    return f"{target}: downloaded from {url}, md5 checked"


CAD_URL = "https://raw.githubusercontent.com/acmi-lab/counterfactually-augmented-data/master/sentiment/combined/paired/"


def fetch_counterfactual(destination: Path, source: Path, url: str) -> list[str]:
    """The counterfactual pairs' files in ``destination/cad``; returns where each came from."""
    folder = destination / CAD_FOLDER
    folder.mkdir(exist_ok=True)
    done = []
    for name in CAD_SPLIT_FILES.values():
        target, shared = folder / name, source / CAD_FOLDER / name
        if target.is_file():
            done.append(f"{target}: already there")
        elif shared.is_file():
            copy(shared, target)
            done.append(f"{target}: copied from {shared}")
        else:
            print(f"downloading {url + name} ...", flush=True)
            download(url + name, target)
            done.append(f"{target}: downloaded from {url + name}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.fetch_data", description=__doc__.split("\n")[0])
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DESTINATION),
                        help=f"folder to fill (default: ${DATA_DIR_ENV}, else %(default)s)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="folder to copy from when it has the files (default: %(default)s)")
    parser.add_argument("--dataset-url", default=OFFICIAL_URL, help="(default: %(default)s)")
    parser.add_argument("--word-index-url", default=WORD_INDEX_URL, help="(default: %(default)s)")
    parser.add_argument("--cad-url", default=CAD_URL, help="folder of the pair files (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
        print(fetch_dataset(args.dest, args.source, args.dataset_url), flush=True)
        print(fetch_word_index(args.dest, args.source, args.word_index_url), flush=True)
        print(*fetch_counterfactual(args.dest, args.source, args.cad_url), sep="\n", flush=True)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
