"""The layouts of the folded embedding and convolution (``training/fold.py``), measured against each other.

Each conv model's current export is rebuilt from its Keras weights (``benchmarks/exports.py``) and rewritten with
every layout of ``fold.LAYOUTS``, with and without the channels-last pooling tail (the other rewrites as
``fold.rewrite`` applies them); then every variant scores the same test reviews in-process (one onnxruntime
thread) at batch 1 and batch 32, the variants alternating within each round; the medians over the rounds are
printed as a table. ``fold.DEFAULT_LAYOUT`` is the fastest.

    python -m benchmarks.fold_layouts [--models conv1d ...] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
from benchmarks.measure import sampled_test_reviews, session
from training.data import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = ["conv1d", "conv1d_tuned", "conv_lstm", "conv_lstm_tuned"]
BATCH_SIZES = (1, 32)
REVIEWS = 512


def build_variants(names: list[str], model_dir: Path, folder: Path) -> dict[str, dict[str, Path]]:
    """Every layout variant of every model, written into ``folder`` (TensorFlow only in this step's process)."""
    from training import fold

    variants = {}
    for name in names:
        current = fold.unrewritten_export(name, model_dir)
        (folder / f"{name}_current.onnx").write_bytes(current)
        variants[name] = {"current export (not rewritten)": str(folder / f"{name}_current.onnx")}
        for layout in fold.LAYOUTS:
            for tail in (True, False):
                label = f"`{layout}`{'' if tail else ', pooling left as it was'}"
                path = folder / f"{name}_{layout}_{int(tail)}.onnx"
                path.write_bytes(fold.rewrite(current, layout=layout, pool_tail=tail).onnx_bytes)
                variants[name][label] = str(path)
    return variants


def measure(paths: dict[str, Path], tokens, rounds: int) -> dict[str, dict[int, float]]:
    sessions = {label: session(Path(path), threads=1) for label, path in paths.items()}
    rates = {label: {size: [] for size in BATCH_SIZES} for label in sessions}
    for model in sessions.values():
        model.run(None, {"tokens": tokens[:32]})
    for round_number in range(rounds):
        labels = list(sessions)
        labels = labels[round_number % len(labels):] + labels[:round_number % len(labels)]
        for size in BATCH_SIZES:
            for label in labels:
                started = time.perf_counter()
                for start in range(0, len(tokens), size):
                    sessions[label].run(None, {"tokens": tokens[start:start + size]})
                rates[label][size].append(len(tokens) / (time.perf_counter() - started))
    return {label: {size: statistics.median(values) for size, values in by_size.items()}
            for label, by_size in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fold_layouts", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)  # the TensorFlow step's child process
    args = parser.parse_args(argv)
    if args.build_into:
        (args.build_into / "variants.json").write_text(json.dumps(build_variants(args.models, args.model_dir,
                                                                                 args.build_into)))
        return 0
    try:
        reviews = sampled_test_reviews(REVIEWS)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fold-layouts-") as scratch:
        folder = Path(scratch)
        subprocess.run([sys.executable, "-m", "benchmarks.fold_layouts", "--models", *args.models, "--model-dir",
                        str(args.model_dir), "--build-into", str(folder)], cwd=REPO_ROOT, check=True)
        variants = json.loads((folder / "variants.json").read_text())
        print(f"reviews/s, 1 onnxruntime thread, medians of {args.rounds} rounds on {REVIEWS} test reviews\n")
        print("| model | layout | " + " | ".join(f"batch {size}" for size in BATCH_SIZES) + " |")
        print("|---|---|" + "---|" * len(BATCH_SIZES))
        for name, paths in variants.items():
            metadata = read_metadata(args.model_dir / f"{name}.json")
            tokens = load_tokenizer(metadata, args.model_dir).encode_batch(reviews)
            for label, by_size in measure(paths, tokens, args.rounds).items():
                print(f"| `{name}` | {label} | " + " | ".join(f"{by_size[size]:,.0f}" for size in BATCH_SIZES)
                      + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
