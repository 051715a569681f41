"""The committed models' tokenizers, their own time per review, this checkout against another side by side.

Each round times every model's tokenizer in a fresh process of each checkout, the checkouts' order alternating
between rounds, on the same test reviews one at a time (as the service reads a one-review request), the best of
three passes after one to warm up (the spelling rule remembers the words it has corrected, as a running service
has). The result is
each checkout's median over the rounds and the median of the rounds' ratios (the other checkout's time over
this one's): this machine's speed drifts by tens of per cent within minutes.

    python -m benchmarks.tokenizing --against ../before      # e.g. a `git worktree add ../before HEAD~1`
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.measure import sampled_test_reviews
from training.data import DataError

REVIEWS = 2000
# What runs in each checkout: only load_tokenizer, read_metadata and encode_reviews, which both sides have.
TIME_ONE_CHECKOUT = """
import json, sys, time
from pathlib import Path
from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
model_dir, models, reviews = Path(sys.argv[1]), sys.argv[2].split(","), json.loads(Path(sys.argv[3]).read_text())
timings = {}
for name in models:
    tokenizer = load_tokenizer(read_metadata(model_dir / f"{name}.json"), model_dir)
    for review in reviews:
        tokenizer.encode_reviews([review])
    passes = []
    for _ in range(3):
        started = time.perf_counter()
        for review in reviews:
            tokenizer.encode_reviews([review])
        passes.append((time.perf_counter() - started) / len(reviews) * 1e6)
    timings[name] = min(passes)
print(json.dumps(timings))
"""


def time_checkout(checkout: Path, models: list[str], reviews_file: Path) -> dict[str, float]:
    """µs per review of each model's tokenizer in ``checkout``, measured by a fresh Python there."""
    done = subprocess.run([sys.executable, "-c", TIME_ONE_CHECKOUT, str(checkout / "models"), ",".join(models),
                           str(reviews_file)], cwd=checkout, capture_output=True, text=True, check=False)
    if done.returncode:
        last_line = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise RuntimeError(f"timing the tokenizers in {checkout} failed: {last_line}")
    return json.loads(done.stdout)


def compare(this: Path, other: Path, models: list[str], reviews: list[str], rounds: int) -> dict[str, dict]:
    """Per model: both checkouts' median µs per review and the median ratio other / this."""
    runs: dict[str, list[dict[str, float]]] = {"this": [], "other": []}
    with tempfile.TemporaryDirectory(prefix="sentiment-tokenizing-") as folder:
        reviews_file = Path(folder) / "reviews.json"
        reviews_file.write_text(json.dumps(reviews))
        for round_number in range(rounds):
            order = [("this", this), ("other", other)][::1 if round_number % 2 == 0 else -1]
            for label, checkout in order:
                runs[label].append(time_checkout(checkout, models, reviews_file))
            print(f"round {round_number + 1}: " + ", ".join(
                f"{name} {runs['other'][-1][name]:.1f} -> {runs['this'][-1][name]:.1f} µs" for name in models),
                flush=True)
    return {name: {"other_us": statistics.median(run[name] for run in runs["other"]),
                   "this_us": statistics.median(run[name] for run in runs["this"]),
                   "speedup": statistics.median(o[name] / t[name] for o, t in zip(runs["other"], runs["this"],
                                                                                  strict=True))}
            for name in models}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tokenizing", description=__doc__.split("\n")[0])
    parser.add_argument("--against", type=Path, required=True, help="the other checkout (e.g. the commit before)")
    parser.add_argument("--models", nargs="+", default=["robust_bag", "conv1d"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reviews", type=int, default=REVIEWS, help="test reviews timed per model and round")
    parser.add_argument("--data", type=Path, help="IMDB archive or folder (default: the data setting)")
    args = parser.parse_args(argv)
    if not (args.against / "models").is_dir():
        print(f"error: {args.against} is not a checkout of this project (no models/ folder)", file=sys.stderr)
        return 2
    try:
        reviews = sampled_test_reviews(args.reviews, args.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    this = Path(__file__).resolve().parent.parent
    try:
        results = compare(this, args.against.resolve(), args.models, reviews, args.rounds)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"\nmedians over {args.rounds} rounds, {len(reviews)} test reviews one at a time, µs per review:")
    for name, row in results.items():
        print(f"  {name:>16}: {row['other_us']:7.1f} ({args.against}) -> {row['this_us']:7.1f} (this checkout), "
              f"{row['speedup']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
