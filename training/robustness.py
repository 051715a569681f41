"""The robustness evaluation: how a model does on reviews unlike the IMDB test set's.

    python -m training.robustness [--models NAME ...] [--out models/]

Three sets besides the test set's accuracy (issue #16), each scored through the exported ONNX graph with the
model's own tokenizer, as the service scores:

* the counterfactual **dev** pairs (``training/cad.py``): accuracy on the originals, on the minimally edited
  label-flipped copies, and the share of pairs with both right. A model that learned which reviews were positive
  keeps its answer when a few words flip the sentiment;
* the **checklist** suite (``training/checklist.jsonl``, ``training/checklist.py``): short templated reviews for
  negation, contrast, intensity, filler, typos and one-word reviews, each with its expected label;
* **snippets**: the first and the last sentence of every IMDB test review, alone, labelled by their review:
  how the model reads a sentence or two, as people type them. A snippet can be neutral ("I saw this on TV."), so
  no model reaches 1.0 here; the figures compare models, they are not a target.

The pipeline runs it after each export; this command (re)computes it for models already in ``--out`` and
rewrites their metadata's ``robustness`` block and REPORT.md. Uses no TensorFlow.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artifacts.loading import load_tokenizer
from artifacts.metadata import MetadataError, Robustness, read_metadata, write_metadata
from artifacts.tokenizer import Tokenizer
from training.cad import CadPair, CadSet, counterfactual_folder, load_cad
from training.checklist import ChecklistItem, load_checklist
from training.data import DataError, dataset_path, load_imdb, require_data_file
from training.evaluate import THRESHOLD

CAD_HINT = "cad/ folder in the data folder (training/cad.py)"
# A sentence ends at . ! or ? followed by space, or at a line break (IMDB writes them as <br />).
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

log = logging.getLogger("training")

Scorer = Callable[[Sequence[str]], np.ndarray]  # review texts -> positive probabilities


def sentences(review: str) -> list[str]:
    """The review's sentences, markup removed, empty ones (no letter or digit) left out."""
    text = _LINE_BREAK.sub("\n", review)
    return [part.strip() for part in _SENTENCE_END.split(text) if any(char.isalnum() for char in part)]


@dataclass(frozen=True)
class Snippets:
    first: list[str]
    last: list[str]
    labels: np.ndarray


def snippets(texts: Sequence[str], labels: Sequence[int]) -> Snippets:
    """The first and last sentence of every review that has at least two."""
    kept = [(parts[0], parts[-1], label) for parts, label in zip(map(sentences, texts), labels, strict=True)
            if len(parts) >= 2]
    first, last, kept_labels = zip(*kept, strict=True)
    return Snippets(list(first), list(last), np.asarray(kept_labels))


@dataclass(frozen=True)
class RobustnessSets:
    cad_dev: list[CadPair]
    checklist: list[ChecklistItem]
    snippets: Snippets


def robustness_sets(cad_dev: CadSet, test_texts: Sequence[str], test_labels: Sequence[int]) -> RobustnessSets:
    """The three sets: the dev pairs (the skipped ones named in the log), the checklist, and the snippets of the
    test reviews."""
    if cad_dev.skipped:
        log.warning("counterfactual dev pairs skipped (no single IMDB training original): %s",
                    ", ".join(cad_dev.skipped))
    return RobustnessSets(cad_dev.pairs, load_checklist(), snippets(test_texts, test_labels))


def right(scores: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Per review, whether the score's label (positive at or above THRESHOLD, as the service labels) is ``labels``'."""
    return (np.asarray(scores) >= THRESHOLD) == np.asarray(labels, dtype=bool)


def cad_figures(pairs: Sequence[CadPair], original_scores: np.ndarray, edited_scores: np.ndarray) -> dict[str, float]:
    """Accuracy on the pairs' originals and edited copies, and the share of pairs with both right."""
    original_right = right(original_scores, [pair.original.label for pair in pairs])
    edited_right = right(edited_scores, [pair.edited.label for pair in pairs])
    return {"cad_dev_original": float(original_right.mean()), "cad_dev_edited": float(edited_right.mean()),
            "cad_dev_pair_consistency": float((original_right & edited_right).mean())}


def evaluate(score: Scorer, sets: RobustnessSets, originals_in_training: bool) -> Robustness:
    """The model's figures on the three sets; ``score`` maps texts to positive probabilities (called once, on
    every text of the three sets)."""
    pairs, items, snips = sets.cad_dev, sets.checklist, sets.snippets
    groups = [[pair.original.text for pair in pairs], [pair.edited.text for pair in pairs],
              [item.text for item in items], snips.first, snips.last]
    original, edited, checklist, first, last = np.split(score([text for group in groups for text in group]),
                                                        np.cumsum([len(group) for group in groups])[:-1])
    item_right = right(checklist, [item.label for item in items])
    by_category = {category: round(float(np.mean([ok for ok, item in zip(item_right, items, strict=True)
                                                  if item.category == category])), 4)
                   for category in sorted({item.category for item in items})}
    return Robustness(
        cad_dev_pairs=len(pairs),
        **{name: round(value, 4) for name, value in cad_figures(pairs, original, edited).items()},
        cad_dev_originals_in_training=originals_in_training,
        checklist_reviews=len(items),
        checklist=round(float(item_right.mean()), 4),
        checklist_by_category=by_category,
        snippet_reviews=len(snips.labels),
        snippets_first_sentence=round(float(right(first, snips.labels).mean()), 4),
        snippets_last_sentence=round(float(right(last, snips.labels).mean()), 4),
    )


def onnx_scorer(onnx_bytes: bytes, tokenizer: Tokenizer) -> Scorer:
    """Texts -> the exported graph's scores, tokenized with the model's own tokenizer, as the service scores."""
    from training.calibrate import scores_and_logits

    return lambda texts: scores_and_logits(onnx_bytes, tokenizer.encode_batch(list(texts)))[0].astype(np.float64)


def originals_in_training(config: dict) -> bool:
    """Models trained without counterfactual pairs (``config``: the training configuration, as the metadata
    records it) trained on every IMDB training review, the dev originals too."""
    return not config.get("counterfactual_copies", 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.robustness", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="model folder (default: %(default)s)")
    parser.add_argument("--models", nargs="+", help="models in --out to evaluate (default: every one)")
    parser.add_argument("--data", type=Path, help="IMDB archive (default: the data setting's, training/data.py)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    names = args.models or sorted(path.stem for path in args.out.glob("*.onnx"))
    try:
        data = args.data or require_data_file(dataset_path())
        dataset = load_imdb(data)
        sets = robustness_sets(load_cad("dev", dataset["train"].texts, counterfactual_folder(data)),
                               dataset["test"].texts, dataset["test"].labels)
        cache: dict = {}
        for name in names:
            metadata = read_metadata(args.out / f"{name}.json")
            onnx_bytes = (args.out / f"{name}.onnx").read_bytes()
            tokenizer = load_tokenizer(metadata, args.out, cache)
            robustness = evaluate(onnx_scorer(onnx_bytes, tokenizer), sets,
                                  originals_in_training(metadata.config))
            write_metadata(metadata.model_copy(update={"robustness": robustness}), args.out / f"{name}.json")
            log.info("%s: %s", name, robustness.model_dump(exclude={"checklist_by_category"}))
    except (DataError, MetadataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from training.pipeline import write_report

    write_report(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
