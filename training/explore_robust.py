"""Exploration for issue #16, robust models: variants trained once (seed 1337) and judged on the validation split
and the counterfactual dev pairs only. The test set, the checklist suite and the snippets are not touched here;
the winner becomes a preset in ``training/presets.py`` and is evaluated once by the pipeline.

    python -m training.explore_robust [--only NAME ...] [--out models/robust_experiments.json]

Every variant trains as the pipeline trains it (``training.pipeline.training_set``: with counterfactual copies,
the dev pairs' originals are left out of the training reviews). After each epoch the run is scored on its
validation split and on the dev pairs; the figures of the epoch with the best validation accuracy (the epoch the
pipeline keeps) are recorded. The rule that picks the preset: the best mean of validation accuracy and dev
edited-review accuracy, the two kinds of review the product must read well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index
from training import presets
from training.cad import CadPair
from training.data import DataError, dataset_path, load_imdb, require_data_file, word_index_path
from training.robustness import cad_figures

BAG = presets.TUNED["bigram_bag"]
SCOPES = {"tokenizer": "keras_scopes"}

# The variants run for the robust preset (models/robust_experiments.json). Earlier scratch runs (not recorded
# here; a split like this one, six epochs): the counterfactual pairs alone raised dev edited accuracy from 0.53
# to 0.76 and, with negation scopes, to 0.80 (validation 0.916), short of the 0.85 target; the reviews made from
# the editors' swaps were what crossed it.
CANDIDATES: dict[str, presets.TrainingConfig] = {
    "bag_scopes_cad5_made": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True, epochs=12),
    "bag_scopes_cad5_made3": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                     made_min_share=0.03, epochs=12),
    "bag_scopes_cad5_made5": replace(BAG, **SCOPES, counterfactual_copies=5, made_counterfactuals=True,
                                     made_min_share=0.05, epochs=12),
}

log = logging.getLogger("training.explore_robust")


def dev_figures(model, tokenizer: Tokenizer, pairs: list[CadPair]) -> dict[str, float]:
    """Accuracy on the dev pairs' originals and edited copies, and the share of pairs with both right."""
    original, edited = (model.predict(tokenizer.encode_batch(texts), verbose=0).ravel()
                        for texts in ([p.original.text for p in pairs], [p.edited.text for p in pairs]))
    return cad_figures(pairs, original, edited)


def per_epoch_measure(keras, tokenizer: Tokenizer, pairs: list[CadPair], into: list[dict]):
    """A Keras callback that appends each epoch's validation accuracy and dev pair figures to ``into``."""

    class PerEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            into.append({"val_accuracy": float(logs["val_accuracy"]), **dev_figures(self.model, tokenizer, pairs)})
            log.info("epoch %d: %s", epoch + 1, ", ".join(f"{key} {value:.4f}" for key, value in into[-1].items()))

    return PerEpoch()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.explore_robust", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/robust_experiments.json"))
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    args = parser.parse_args(argv)
    from training import pipeline

    try:
        data = require_data_file(dataset_path())
        dataset = load_imdb(data)
        word_index = load_word_index(require_data_file(word_index_path()))
        cad = pipeline.load_counterfactual(dataset, data)
        if cad is None:
            raise DataError("the counterfactual pairs (cad/) are not in the data folder")
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # Keras and TensorFlow are imported only from here on, after the cheap checks.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from training import fit

    reviews = pipeline.sample_reviews(dataset, None)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or CANDIDATES:
        config = CANDIDATES[name]
        train = pipeline.training_set(reviews, config, cad)
        tokenizer = Tokenizer(word_index, config.num_words, config.max_len, config.tokenizer)
        x_train = tokenizer.encode_batch(train.texts)
        extra = ((tokenizer.encode_batch(train.extra_texts), train.extra_labels, train.extra_sources)
                 if train.extra_texts else None)
        per_epoch: list[dict] = []
        measure = per_epoch_measure(keras, tokenizer, cad["dev"].pairs, per_epoch)
        started = time.perf_counter()
        run = fit.train_once(name, config, config.seeds[0], x_train, train.labels, 2, extra, [measure])
        best = per_epoch[run.best_epoch - 1]
        results[name] = {
            "config": config.to_dict(), "seed": run.seed, "best_epoch": run.best_epoch,
            "best_val_accuracy": run.best_val_accuracy, **{k: v for k, v in best.items() if k != "val_accuracy"},
            "choice_score": (run.best_val_accuracy + best["cad_dev_edited"]) / 2,
            "per_epoch": per_epoch, "seconds": round(time.perf_counter() - started, 1),
        }
        log.info("%s: epoch %d, validation %.4f, dev edited %.4f, pairs %.4f", name, run.best_epoch,
                 run.best_val_accuracy, best["cad_dev_edited"], best["cad_dev_pair_consistency"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
