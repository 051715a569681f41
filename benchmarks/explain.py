"""/explain measured: how faithful each model's explanations are, and how long they take.

    python -m benchmarks.explain [--models NAME ...] [--reviews 200] [--requests 60] [--out FOLDER]

Faithfulness (in-process, through the scoring core, every served model): test reviews drawn with a fixed
seed from the real dataset (the data setting, ``IMDB_DATA_DIR``). For each review, the five words with the
largest contribution toward the predicted label are cut out of the text (their character spans, from the
explanation's offsets) and the edited text is scored again. The rate is the share of reviews whose score
moved towards the other label (a review with no word pushing towards its label counts as a miss). For
scale, the same with five words drawn at random among those the model read.

Latency (over HTTP): ``python -m service`` (one worker) on loopback, one client sending ``POST /explain``
for one test review of about 230 words, one request at a time; p50 and p95 per model after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from artifacts.tokenizer import text_to_words
from benchmarks.__main__ import run_stamp, write_report
from benchmarks.measure import free_port, server
from service.config import Settings
from service.scoring import ExplainResult, ScoringCore
from training.data import DataError, dataset_path, load_imdb, require_data_file

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 0
DELETED = 5  # words cut out of each review
TARGET_WORDS = 230  # the latency review's length
WARM_UP_REQUESTS = 5
EXPLAIN_BATCH = 16  # reviews per explanation call (the default SENTIMENT_EXPLAIN_MAX_REVIEWS)


def cut(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the characters of ``spans`` (the words' own characters; what separated them stays)."""
    kept, position = [], 0
    for start, end in sorted(spans):
        kept.append(text[position:start])
        position = end
    return "".join(kept) + text[position:]


def toward_label(explanation, count: int = DELETED) -> list[tuple[int, int]]:
    """The spans of the ``count`` words that pushed the logit most toward the predicted label."""
    sign = 1.0 if explanation.label == "positive" else -1.0
    pushing = [t for t in explanation.tokens if not t.truncated and sign * t.contribution > 0]
    pushing.sort(key=lambda t: sign * t.contribution, reverse=True)
    return [(t.start, t.end) for t in pushing[:count]]


def random_words(explanation, rng: random.Random, count: int = DELETED) -> list[tuple[int, int]]:
    read = [(t.start, t.end) for t in explanation.tokens if not t.truncated]
    return rng.sample(read, min(count, len(read)))


def moved_away(label: str, before: float, after: float) -> bool:
    return after < before if label == "positive" else after > before


async def faithfulness(core: ScoringCore, name: str, reviews: list[str]) -> dict:
    model = core.repository.models[name]
    explanations = []
    started = time.perf_counter()
    for start in range(0, len(reviews), EXPLAIN_BATCH):
        result: ExplainResult = await core.explain_with(model, reviews[start:start + EXPLAIN_BATCH])
        explanations += result.explanations
    explain_seconds = time.perf_counter() - started
    rng = random.Random(SEED)
    top = [cut(text, toward_label(e)) for text, e in zip(reviews, explanations, strict=True)]
    drawn = [cut(text, random_words(e, rng)) for text, e in zip(reviews, explanations, strict=True)]
    (top_scores,) = (await core.score_with([model], top)).results
    (random_scores,) = (await core.score_with([model], drawn)).results
    moved = [moved_away(e.label, e.score, after) for e, after in zip(explanations, top_scores.scores, strict=True)]
    moved_random = [moved_away(e.label, e.score, after)
                    for e, after in zip(explanations, random_scores.scores, strict=True)]
    flipped = [e.label != label for e, label in zip(explanations, top_scores.labels, strict=True)]
    return {"model": name, "method": result.method, "reviews": len(reviews), "rate": float(np.mean(moved)),
            "random_rate": float(np.mean(moved_random)), "label_flipped": float(np.mean(flipped)),
            "without_a_word_toward_the_label": sum(not toward_label(e) for e in explanations),
            "explain_seconds": explain_seconds}


def latency_review(texts: list[str]) -> str:
    return min(texts, key=lambda text: (abs(len(text_to_words(text)) - TARGET_WORDS), text))


def latencies(model_dir: Path, names: list[str], review: str, requests: int, folder: Path) -> list[dict]:
    port = free_port()
    env = {"SENTIMENT_PORT": str(port), "SENTIMENT_MODEL_DIR": str(model_dir), "SENTIMENT_WORKERS": "1",
           "SENTIMENT_ACCESS_LOG": "false"}
    rows = []
    with server([sys.executable, "-m", "service"], env, port, "/readyz", folder / "service.log") as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        for name in names:
            times = []
            for index in range(WARM_UP_REQUESTS + requests):
                started = time.perf_counter()
                response = client.post("/explain", params={"model": name}, json={"reviews": [review]})
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if index >= WARM_UP_REQUESTS:
                    times.append(elapsed * 1000)
            method = response.json()["method"]
            quantiles = statistics.quantiles(times, n=20)
            rows.append({"model": name, "method": method, "requests": requests, "p50_ms": statistics.median(times),
                         "p95_ms": quantiles[18]})
            print(f"  {name}: p50 {rows[-1]['p50_ms']:.1f} ms, p95 {rows[-1]['p95_ms']:.1f} ms", flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [f"/explain measured on {report['machine']['cpu']} ({report['machine']['cores']} cores), {report['date']}; "
             f"`{report['command']}`.", "",
             f"Faithfulness: {report['reviews']} test reviews (seed {SEED}); the {DELETED} words with the largest "
             "contribution toward the predicted label cut out of the text, rescored.", "",
             "| model | method | score moved toward the other label | label flipped | same with 5 random words | "
             "explaining the reviews, s |", "|---|---|---|---|---|---|"]
    for row in report["faithfulness"]:
        lines.append(f"| `{row['model']}` | {row['method']} | **{row['rate']:.1%}** | {row['label_flipped']:.1%} | "
                     f"{row['random_rate']:.1%} | {row['explain_seconds']:.1f} |")
    lines += ["", f"Latency over HTTP (one worker, one request at a time), one review of {report['latency_words']} "
                  "words:", "", "| model | method | p50 ms | p95 ms |", "|---|---|---|---|"]
    for row in report["latency"]:
        lines.append(f"| `{row['model']}` | {row['method']} | **{row['p50_ms']:.1f}** | {row['p95_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explain", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", help="default: every served model")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, help="IMDB archive (default: from the data setting, IMDB_DATA_DIR)")
    parser.add_argument("--reviews", type=int, default=200, help="test reviews for the faithfulness rate")
    parser.add_argument("--requests", type=int, default=60, help="timed /explain requests per model")
    parser.add_argument("--out", type=Path, help="folder to write explain.{md,json} to (default: print only)")
    args = parser.parse_args(argv)
    try:
        test = load_imdb(args.data or require_data_file(dataset_path()))["test"]
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    reviews = [test.texts[i] for i in random.Random(SEED).sample(range(len(test)), args.reviews)]
    core = ScoringCore.load(Settings(model_dir=args.model_dir))
    names = args.models or core.repository.names

    async def measure() -> list[dict]:
        try:
            rows = []
            for name in names:
                rows.append(await faithfulness(core, name, reviews))
                row = rows[-1]
                print(f"  {name} ({row['method']}): {row['rate']:.1%} moved toward the other label "
                      f"(random words: {row['random_rate']:.1%}), {row['explain_seconds']:.1f} s", flush=True)
            return rows
        finally:
            await core.close()

    print(f"faithfulness on {len(reviews)} test reviews", flush=True)
    faithful = asyncio.run(measure())
    review = latency_review(test.texts)
    print(f"latency over HTTP, one review of {len(text_to_words(review))} words", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        timed = latencies(args.model_dir, names, review, args.requests, Path(scratch))
    report = {**run_stamp("benchmarks.explain", argv), "reviews": len(reviews), "faithfulness": faithful,
              "latency_words": len(text_to_words(review)), "latency": timed,
              "models": {name: core.repository.models[name].version for name in names}}
    text = markdown(report)
    print(text)
    if args.out:
        write_report(args.out, "explain", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
