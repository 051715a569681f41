"""Bulk scoring's throughput against the in-process limit: ``python -m bulk.benchmark`` (README, "Bulk scoring on Ray").

In one run, on the same input with the same models:

* **in-process**: the same scoring (``BatchScorer.score_table``, what each Ray actor calls) over the same blocks in a
  plain loop in this process, no Ray: one core, the service's onnxruntime settings. Reading the input is included;
  loading the models is not.
* **python -m bulk**: the command as a user runs it, on Ray started by itself on this machine (or ``--address``),
  timed from the command's start to its end (Ray's start, the actors' model loading, reading, scoring and writing),
  and its steady rate: the rows after the first block over the time from the first block to the last.

The default input is the aclImdb archive's 25,000 test reviews (``training/data.py`` finds it: ``IMDB_DATA_DIR``,
``data/`` or ``../shared/data``); the default models ``conv1d`` and ``bigram_bag``. The two outputs are compared
row by row. ``--json PATH`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from bulk.scoring import BatchScorer, score_column
from bulk.sources import open_source
from service.config import Settings
from training.data import dataset_path, require_data_file

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS = ("conv1d", "bigram_bag")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def in_process(source, models: list[str], batch_size: int) -> dict:
    """The scoring of every block in a plain loop in this process: reviews/s and the scores by id."""
    scorer = BatchScorer.from_settings(Settings(), models)
    scorer.warm_up()
    scores: dict[str, tuple[float, ...]] = {}
    rows = 0
    started = time.perf_counter()
    for table in source.rows(block_rows=batch_size):
        scored = scorer.score_table(table)
        rows += scored.num_rows
        columns = [scored.column(score_column(model)).to_pylist() for model in models]
        scores.update(zip(scored.column("id").to_pylist(), zip(*columns, strict=True), strict=True))
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "reviews_per_s": round(rows / seconds, 1), "scores": scores}


def through_bulk(input_path: Path, split: str | None, models: list[str], batch_size: int, address: str | None,
                 concurrency: int | None) -> dict:
    """``python -m bulk`` in a subprocess: its wall time, its own summary, its output's scores by id."""
    with tempfile.TemporaryDirectory(prefix="bulk-benchmark-") as folder:
        output, stats = Path(folder) / "scores.parquet", Path(folder) / "stats.json"
        command = [sys.executable, "-m", "bulk", "--input", str(input_path), "--output", str(output),
                   "--models", *models, "--batch-size", str(batch_size), "--stats", str(stats), "--no-progress"]
        command += ["--split", split] if split else []
        command += ["--address", address] if address else []
        command += ["--concurrency", str(concurrency)] if concurrency else []
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                                env={**os.environ, "RAY_ADDRESS": address or ""})
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"python -m bulk failed ({result.returncode}):\n{result.stderr[-3000:]}")
        summary = json.loads(stats.read_text())
        table = pq.read_table(output)
        columns = [table.column(score_column(model)).to_pylist() for model in models]
        scores = dict(zip(table.column("id").to_pylist(), zip(*columns, strict=True), strict=True))
    return {"rows": summary["rows"], "seconds": round(seconds, 2), "reviews_per_s": round(summary["rows"] / seconds, 1),
            "pipeline_seconds": round(summary["seconds"], 2), "steady_reviews_per_s": summary["steady_rows_per_second"],
            "actors": summary["actors"], "nodes": len(summary["nodes"]), "summary_line": result.stderr.strip()
            .splitlines()[-1], "scores": scores}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bulk.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, help="default: the aclImdb archive (its test split)")
    parser.add_argument("--split", default=None, help="the archive's split (default: test for the default input)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--address", help="a Ray cluster for python -m bulk (default: Ray started by it)")
    parser.add_argument("--concurrency", type=int, help="python -m bulk's actors (default: the cluster's CPUs)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    input_path = args.input or require_data_file(dataset_path())
    split = args.split or ("test" if args.input is None else None)
    source = open_source(input_path, split)

    print(f"input: {input_path}{f' ({split} split)' if split else ''}; models: {', '.join(args.models)}; "
          f"CPU: {cpu_model()} x {os.cpu_count()}", flush=True)
    local = in_process(source, args.models, args.batch_size)
    print(f"in-process loop (no Ray, one process): {local['rows']} reviews in {local['seconds']} s = "
          f"{local['reviews_per_s']:,.0f} reviews/s", flush=True)
    ray = through_bulk(input_path, split, args.models, args.batch_size, args.address, args.concurrency)
    print(f"python -m bulk ({ray['actors']} actors, {ray['nodes']} node(s)): {ray['rows']} reviews in "
          f"{ray['seconds']} s end to end = {ray['reviews_per_s']:,.0f} reviews/s; steady "
          f"{ray['steady_reviews_per_s']:,.0f} reviews/s", flush=True)
    print(f"  {ray['summary_line']}")
    mismatched = [row_id for row_id, scores in local["scores"].items()
                  if row_id not in ray["scores"] or max(abs(a - b) for a, b in zip(scores, ray["scores"][row_id],
                                                                                      strict=True)) > 1e-6]
    print(f"scores: {len(local['scores']) - len(mismatched)} of {len(local['scores'])} reviews equal (|diff| <= 1e-6) "
          "in both runs", flush=True)
    ratio = {"end_to_end": round(ray["reviews_per_s"] / local["reviews_per_s"], 2),
             "steady": round(ray["steady_reviews_per_s"] / local["reviews_per_s"], 2)}
    print(f"python -m bulk / in-process: {ratio['end_to_end']:.2f}x end to end, {ratio['steady']:.2f}x steady")
    if args.json is not None:
        figures = {"input": str(input_path), "split": split, "models": args.models, "batch_size": args.batch_size,
                   "cpu": cpu_model(), "cpus": os.cpu_count(),
                   "in_process": {k: v for k, v in local.items() if k != "scores"},
                   "bulk": {k: v for k, v in ray.items() if k != "scores"}, "ratio": ratio,
                   "mismatched_scores": len(mismatched)}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
