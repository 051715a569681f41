"""Exploration for the course's "Your turn" question 2: variants of both families, each trained once
(seed 1337) and judged on the validation split only. The test set is not touched here; the winners
become presets in ``training/presets.py`` and are evaluated once by the pipeline.

    python -m training.explore --out models/experiments.json [--only NAME ...]

The training reviews and the Keras word index come from the data setting (``IMDB_DATA_DIR``, else
``data/``, else ``../shared/data``; see ``training/data.py``), or from ``--data`` and ``--word-index``.
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

import numpy as np

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index
from training import presets
from training.data import DataError, dataset_path, load_imdb, require_data_file, word_index_path
from training.pipeline import SAMPLE_SEED

CONV1D, CONV_LSTM = presets.COURSE["conv1d"], presets.COURSE["conv_lstm"]
ADAM = {"optimizer": "adam", "learning_rate": 1e-3, "epochs": 8, "early_stopping_patience": 2, "seeds": (1337,)}
DROPOUT = {"spatial_dropout": 0.2, "dropout": 0.5}
# Narrower embedding, more and shorter filters, max+avg pooling, twice the vocabulary.
WIDE = {"embedding_dim": 64, "filters": 64, "kernel_size": 5, "pool_size": 4, "pooling": "max+avg",
        "num_words": 20_000}
# fastText-style: small embeddings, hashed bigrams, Adam at a small batch; they learn in a few epochs.
BAG = {**ADAM, "family": "bag", "num_words": 20_000, "ngram_orders": (2,), "batch_size": 32, "epochs": 10}

CANDIDATES: dict[str, presets.TrainingConfig] = {
    "conv1d_adam": replace(CONV1D, **ADAM),
    "conv1d_adam_dropout": replace(CONV1D, **ADAM, **DROPOUT),
    "conv1d_e64_f64_k5_maxavg_20k": replace(CONV1D, **ADAM, **DROPOUT, **WIDE),
    "conv1d_f128_k5_maxavg_20k": replace(CONV1D, **ADAM, **DROPOUT, **{**WIDE, "embedding_dim": 128, "filters": 128}),
    "conv1d_e64_f64_k5_maxavg_20k_len800": replace(CONV1D, **ADAM, **DROPOUT, **WIDE, max_len=800),
    "conv_lstm_adam": replace(CONV_LSTM, **ADAM),
    "conv_gru_adam_dropout": replace(CONV_LSTM, **ADAM, spatial_dropout=0.2, dropout=0.3, recurrent="gru"),
    "conv_bigru_f64_pool4_20k": replace(CONV_LSTM, **ADAM, spatial_dropout=0.2, dropout=0.3, filters=64,
                                        pool_size=4, recurrent="bigru", num_words=20_000),
    "conv_bilstm_f64_pool4_20k": replace(CONV_LSTM, **ADAM, spatial_dropout=0.2, dropout=0.3, filters=64,
                                         pool_size=4, recurrent="bilstm", num_words=20_000),
    "conv1d_e64_f64_k5_maxavg_20k_hashed_bigrams_b18_d8": replace(
        CONV1D, **ADAM, **DROPOUT, **WIDE, ngram_orders=(2,), ngram_buckets_log2=18, ngram_dim=8, batch_size=32),
    "bag_bigrams_b18_d8": replace(CONV1D, **BAG, embedding_dim=8, ngram_buckets_log2=18, ngram_dim=8),
    "bag_bigrams_b20_d8": replace(CONV1D, **BAG, embedding_dim=8, ngram_buckets_log2=20, ngram_dim=8),
    "bag_bigrams_b20_d16": replace(CONV1D, **BAG, embedding_dim=16, ngram_buckets_log2=20, ngram_dim=16),
    "bag_bigrams_b20_d8_e20": replace(CONV1D, **{**BAG, "epochs": 20}, embedding_dim=8, ngram_buckets_log2=20,
                                      ngram_dim=8),
    "bag_bigrams_b20_d16_50k": replace(CONV1D, **{**BAG, "num_words": 50_000}, embedding_dim=16,
                                       ngram_buckets_log2=20, ngram_dim=16),
}

log = logging.getLogger("training.explore")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m training.explore", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="dataset archive or folder (default: from the data setting)")
    parser.add_argument("--word-index", type=Path, help="Keras IMDB word index (default: from the data setting)")
    parser.add_argument("--out", type=Path, default=Path("models/experiments.json"))
    parser.add_argument("--only", nargs="+", choices=list(CANDIDATES), help="run only these candidates")
    args = parser.parse_args(argv)
    try:
        train = load_imdb(args.data or require_data_file(dataset_path()))["train"]
        word_index = load_word_index(args.word_index or require_data_file(word_index_path()))
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    # Keras and TensorFlow are imported only from here on, after the cheap checks.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training import fit

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or CANDIDATES:
        config = CANDIDATES[name]
        tokenizer = Tokenizer(word_index, config.num_words, config.max_len)
        x_train = tokenizer.encode_batch(train.texts)
        y_train = np.asarray(train.labels, dtype="float32")
        started = time.perf_counter()
        run = fit.train_once(name, config, config.seeds[0], x_train, y_train, verbose=2)
        results[name] = {
            "config": config.to_dict(), "seed": run.seed, "parameters": int(run.model.count_params()),
            "best_val_accuracy": run.best_val_accuracy, "best_epoch": run.best_epoch,
            "epochs_run": run.epochs_run, "seconds": round(time.perf_counter() - started, 1),
            "validation_split": fit.VALIDATION_SPLIT, "sample_seed": SAMPLE_SEED,
        }
        log.info("%s: validation accuracy %.4f at epoch %d (%d params, %.0f s)", name, run.best_val_accuracy,
                 run.best_epoch, results[name]["parameters"], results[name]["seconds"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
