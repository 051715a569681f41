"""Writes tests/data/imdb_sample.jsonl: a small, fixed sample of real IMDB reviews for the test suite.

The source is the Large Movie Review Dataset v1.0 (Maas et al., ACL 2011), read with
``training.data.load_imdb`` from the labelled archive every checkout of the project has at
``../shared/data``. The tests themselves never read that archive. Run from the repository root:

    .venv/bin/python -m tests.data.make_sample   # --data ARCHIVE --out FILE to override

The sample (see tests/data/README.md) is chosen with one fixed seed, so the same archive gives the
same file byte for byte:

* test split: 100 negative and 100 positive reviews drawn at random; every review that
  tests/test_service.py finds by its opening words; more 1- and 10-star reviews drawn at random until
  there are at least EXTREMES_PER_RATING of each;
* train split: 100 negative and 100 positive reviews drawn at random.

Each line is one review as ASCII JSON, {"split", "id", "rating", "label", "text"}, sorted as load_imdb
orders them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tarfile
from pathlib import Path

from training.data import load_imdb

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"
DEFAULT_OUT = Path(__file__).resolve().parent / "imdb_sample.jsonl"
REVIEW_PATH = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")  # as training.data reads it
SEED = 2011
PER_LABEL = 100  # per split and label: the pipeline smoke test's tarball takes 100 of each
EXTREMES_PER_RATING = 60  # test reviews with 1 star and with 10 stars, at least
# The openings tests/test_service.py looks up (CLEARLY_POSITIVE, CLEARLY_NEGATIVE): 10- and 1-star test reviews.
OPENINGS = [
    "This has got to be the best movie I've seen.",
    "Wonderful movie. Adult content.",
    "Captain Corelli's Mandolin is a beautiful film with a lovely cast",
    "Excellent story of lives that need repair",
    "The best part of this DVD is the cover.",
    "I laughed so much when I saw this film I nearly soiled myself",
    "This movie was a complete waste of time.",
    "This was really the worst movie I've ever seen.",
]


def review_ids(path: Path) -> dict[str, list[tuple[int, int, int]]]:
    """(id, label, rating) of each split's reviews from the archive's file names, in load_imdb's order
    (load_imdb returns texts, labels and ratings, not the ids)."""
    keys = []
    with tarfile.open(path, mode="r:*") as archive:
        for member in archive:
            match = REVIEW_PATH.search(member.name) if member.isfile() else None
            if match is not None:
                split, folder, review_id, rating = match.groups()
                keys.append((split, folder, int(review_id), int(rating)))
    return {split: [(review_id, int(folder == "pos"), rating) for s, folder, review_id, rating in sorted(keys)
                    if s == split] for split in ("train", "test")}


def choose(dataset, rng: random.Random) -> dict[str, set[int]]:
    chosen = {}
    for split in ("train", "test"):
        labels = dataset[split].labels
        picked = set()
        for label in (0, 1):
            picked.update(rng.sample([i for i, value in enumerate(labels) if value == label], PER_LABEL))
        chosen[split] = picked
    test = dataset["test"]
    for opening in OPENINGS:
        matches = [i for i, text in enumerate(test.texts) if text.startswith(opening)]
        if len(matches) != 1:
            raise SystemExit(f"expected one test review opening with {opening!r}, found {len(matches)}")
        chosen["test"].add(matches[0])
    for rating in (1, 10):
        have = sum(test.ratings[i] == rating for i in chosen["test"])
        others = [i for i, value in enumerate(test.ratings) if value == rating and i not in chosen["test"]]
        chosen["test"].update(rng.sample(others, max(0, EXTREMES_PER_RATING - have)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="aclImdb_v1_labeled.tar.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    dataset, ids = load_imdb(args.data), review_ids(args.data)
    chosen = choose(dataset, random.Random(SEED))
    lines = []
    for split in ("train", "test"):
        data = dataset[split]
        if len(ids[split]) != len(data):
            raise SystemExit(f"{args.data}: {len(ids[split])} {split} file names but {len(data)} reviews")
        for i in sorted(chosen[split]):
            review_id, label, rating = ids[split][i]
            if (label, rating) != (data.labels[i], data.ratings[i]):
                raise SystemExit(f"{args.data}: {split} review {i} is not {split}/{review_id}_{rating}.txt")
            review = {"split": split, "id": review_id, "rating": rating, "label": label, "text": data.texts[i]}
            lines.append(json.dumps(review))  # ASCII: \x85 (a line break to str.splitlines) stays escaped
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(lines)} reviews, {args.out.stat().st_size:,} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
