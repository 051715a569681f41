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

from collections import Counter, defaultdict
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from artifacts.tokenizer import negation_scopes, negator, text_to_words, words_with_offsets
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


def counterfactual_folder(data: Path) -> Path:
    """The folder whose ``cad/`` goes with the dataset at ``data``: the archive's folder, or the one that holds
    the extracted ``aclImdb/``."""
    return data.parent if data.is_file() or data.name == "aclImdb" else data


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


# --- counterfactuals made from the training pairs' edits --------------------------------------------------------
# The editors' one-word substitutions (best -> worst, loved -> hated, is -> isn't ...) learned from the training
# pairs, per direction, and applied to IMDB training reviews: a positive review with its positive words swapped
# reads negative, and its topic words (names, plot) then appear under both labels, so a model cannot lean on them.
# A substitution counts when the editors made it at least MIN_SUBSTITUTION_COUNT times in one direction, at most
# 1 / MIN_DIRECTION_RATIO as often in the other ("but" -> "and" was made in both and is left out), and in at least
# MIN_EDIT_RATE of the places the word stood in originals of that label: the editors changed "best" wherever it
# carried the sentiment, "is" (-> "isn't") or "the" only in a few of their thousands of places.
MIN_SUBSTITUTION_COUNT = 2
MIN_DIRECTION_RATIO = 3.0
MIN_EDIT_RATE = 0.2
# A made review needs at least this many substitutions, and at least the caller's share of its words swapped;
# with fewer, most of its sentiment would be left as it was and its new label would be noise.
MIN_SUBSTITUTIONS = 3


def substitutions(pairs: list[CadPair]) -> dict[int, dict[str, str]]:
    """For originals of each label (1 positive, 0 negative): word -> the word the editors most often put in its
    place to flip the review, for the substitutions made consistently in that direction."""
    counts: dict[int, Counter] = {0: Counter(), 1: Counter()}  # (word, replacement) -> times
    changed: dict[int, Counter] = {0: Counter(), 1: Counter()}  # word -> times replaced by anything
    occurrences: dict[int, Counter] = {0: Counter(), 1: Counter()}
    for pair in pairs:
        before, after = text_to_words(pair.original.text), text_to_words(pair.edited.text)
        occurrences[pair.original.label].update(before)
        for operation, i1, i2, j1, j2 in SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
            if operation == "replace" and i2 - i1 == 1 and j2 - j1 == 1:
                counts[pair.original.label][(before[i1], after[j1])] += 1
                changed[pair.original.label][before[i1]] += 1
    lexicon: dict[int, dict[str, str]] = {0: {}, 1: {}}
    for label, found in counts.items():
        other = counts[1 - label]
        for (word, replacement), count in found.most_common():  # the most frequent replacement first
            consistent = count >= MIN_DIRECTION_RATIO * other[(word, replacement)]
            carries_sentiment = changed[label][word] >= MIN_EDIT_RATE * occurrences[label][word]
            if count >= MIN_SUBSTITUTION_COUNT and consistent and carries_sentiment and word not in lexicon[label]:
                lexicon[label][word] = replacement
    return lexicon


def flipped(review: Review, lexicon: dict[int, dict[str, str]], min_share: float = 0.0,
            negate_every: int = 0, focus: bool = False) -> Review | None:
    """The review with every word of its label's substitutions replaced (the text around the words kept, so
    punctuation and negation scopes stay), labelled the other way; None with fewer than MIN_SUBSTITUTIONS or
    than ``min_share`` of its words swapped.

    With ``negate_every`` n > 0, of the swapped words that stand outside a negation's scope (and whose swap is not
    itself a negation, as is -> isn't), the first, the (n+1)-th ... are negated instead of replaced: "boring"
    becomes "not boring", "loved" "not loved". The others are replaced, but for one that an inserted "not"
    already negates (it stands later in that "not"'s clause), which is kept as it is: "great and fun" reads "not
    great and fun", not "not great and dull", which would read a negated "dull". Words already in a negation's
    scope are replaced as without ``negate_every``. Adding or removing a negation was the editors' second way to
    flip a review (3,794 of the 19,829 stretches they changed in the training pairs), and IMDB alone barely
    teaches it: a review with a negated "boring" is positive 42 times in 100, one with "boring" 14, so a model
    learns "never tedious" as a complaint. With ``focus``, a negation's scope is the one the focus rules read
    (``artifacts/tokenizer.py`` ``scope_codes``): an inserted "not" negates only the word it stands before, so "great
    and fun" reads "not great and dull"."""
    replacements = lexicon[review.label]
    pieces, last, made, negatable = [], 0, 0, 0
    words = words_with_offsets(review.text)
    negated = negation_scopes(review.text, focus) if negate_every else [True] * len(words)
    for (word, start, end), in_scope in zip(words, negated, strict=True):
        replacement = replacements.get(word)
        if replacement is None:
            continue
        if not in_scope and not negator(word) and not negator(replacement):
            if negatable % negate_every == 0:
                replacement = f"not {review.text[start:end]}"
            elif negation_scopes("".join([*pieces, review.text[last:end]]), focus)[-1]:  # after an inserted "not"
                replacement = review.text[start:end]
            negatable += 1
        pieces += [review.text[last:start], replacement]
        last, made = end, made + 1
    if made < MIN_SUBSTITUTIONS or made < min_share * len(words):
        return None
    return Review("".join([*pieces, review.text[last:]]), 1 - review.label)
