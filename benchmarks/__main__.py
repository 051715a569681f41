"""Throughput and latency, measured side by side on this machine:

(a) the limit: onnxruntime in-process on pre-tokenized batches;
(b) the service over HTTP on loopback, driven by a load generator in another process;
(c) the naive baseline: Keras ``model.predict`` per request in a minimal FastAPI app;
(d) the current and the rewritten exports of every model (``training/fold.py``; ``benchmarks/exports.py``):
    in-process at batch 1 and 32 with one onnxruntime thread, and the service at concurrency 32 with each;

and, for the (b)/(a) target, (a) at its best setting and (b) at concurrency 32 back to back, three
times, since this machine's speed drifts by several per cent within minutes.

    python -m benchmarks            # writes benchmarks/results/latest.{md,json}
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from artifacts.loading import load_tokenizer
from artifacts.metadata import MetadataError, read_metadata
from benchmarks import exports
from benchmarks.measure import (
    MODEL_BATCH_SIZES,
    PAIRED_CONCURRENCY,
    PAIRED_ROUNDS,
    free_port,
    measure_limit,
    model_latencies,
    paired_ratios,
    run_scenarios,
    sampled_test_reviews,
    server,
    write_bodies,
)
from benchmarks.procfs import wait_for_workers
from training.data import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_SCENARIOS = [(1, 1), (8, 1), (32, 1), (128, 1), (8, 32)]  # (concurrency, reviews per request)
NAIVE_SCENARIOS = [(1, 1), (32, 1)]
PAYLOAD_REVIEWS = 4096  # test reviews drawn (fixed seed) as request payloads and pre-tokenized batches
TOKENIZE_REVIEWS = 1000  # reviews the tokenizer's own time is measured on
LIMIT_SECONDS = 2.0  # per batch size of the (a) sweep


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "numpy": np.__version__, "platform": platform.platform()}


def run_stamp(module: str | None = None, argv: list[str] | None = None) -> dict:
    """The head of every benchmark report: when (UTC) and on what machine it ran, and with ``module``, the command
    that ran it."""
    stamp = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine()}
    if module is not None:
        stamp["command"] = f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:])
    return stamp


def write_report(out: Path, stem: str, report: dict, text: str) -> None:
    """``report`` as ``out/stem.json`` and its Markdown ``text`` as ``out/stem.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(text)


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def markdown(report: dict) -> str:
    limit, model = report["limit"], report["model"]
    lines = [
        f"Benchmark of `{model}` on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"{report['date']}; `python -m benchmarks`, {report['duration_s']:.0f} s per scenario.",
        "",
        "| what | concurrency | reviews/request | reviews/s | p50 ms | p95 ms | p99 ms | errors "
        "| server CPU µs/request: event loops + other threads | load generator CPU µs/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for threads, by_batch in limit["by_threads"].items():
        for batch_size, rate in by_batch.items():
            lines.append(f"| (a) onnxruntime in-process, {threads} thread(s), batch {batch_size} | – | – "
                         f"| {rate:,.0f} | | | | | | |")
    for label, rows in (("(b) service over HTTP", report["service"]), ("(c) naive Keras server", report["naive"])):
        for row in rows:
            cpu = row["server_cpu_us_per_request"]
            lines.append(f"| {label} | {row['concurrency']} | {row['reviews_per_request']} "
                         f"| {row['reviews_per_s']:,.0f} "
                         f"| {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} "
                         f"| {cpu['event_loop']:,.0f} + {cpu['other_threads']:,.0f} "
                         f"| {row['client_cpu_us_per_request']:,.0f} |")
    ratios, pairs = report["ratios"], report["paired"]
    lines += [
        "",
        f"- Limit (a): {limit['best']:,.0f} reviews/s (best batch size and thread count: {limit['best_threads']} "
        f"thread(s), batch {limit['best_batch_size']}).",
        f"- (b)/(a) at concurrency {PAIRED_CONCURRENCY}, 1 review/request, each pair measured back to back: "
        + ", ".join(f"{p['service']:,.0f} / {p['limit']:,.0f} = {p['ratio']:.3f}" for p in pairs)
        + f"; median **{ratios['service_c32_over_limit']:.3f}** (target ≥ 0.5: "
        f"{verdict(ratios['service_c32_over_limit'] >= 0.5)}; errors: {sum(p['errors'] for p in pairs)}).",
        f"- The table's c={PAIRED_CONCURRENCY} row over the table's limit, measured minutes apart: "
        f"{ratios['service_c32_over_sweep_limit']:.3f}.",
        f"- (b) p50 at concurrency 1: **{ratios['service_c1_p50_ms']:.2f} ms** (target < 3 ms: "
        f"{verdict(ratios['service_c1_p50_ms'] < 3)}).",
    ]
    if ratios.get("service_over_naive_c32") is not None:
        lines.append(f"- (b)/(c) at concurrency 32: **{ratios['service_over_naive_c32']:.0f}×** (target ≥ 50×: "
                     f"{verdict(ratios['service_over_naive_c32'] >= 50)}).")
    sizes = MODEL_BATCH_SIZES
    lines += ["", "Every served model in-process (1 onnxruntime thread); reviews/s by batch size:", "",
              "| model | test accuracy | ms per review, alone (p50) | vs conv1d, alone | "
              + " | ".join(f"batch {size}" for size in sizes) + " |",
              "|---|---|---|---|" + "---|" * len(sizes)]
    base = report["models"].get("conv1d", {}).get("p50_ms_one_review")
    for name, row in report["models"].items():
        relative = f"{row['p50_ms_one_review'] / base:.2f}×" if base else ""
        rates = row["reviews_per_s_by_batch"]
        accuracy = "–" if row["test_accuracy"] is None else f"{row['test_accuracy']:.4f}"
        lines.append(f"| `{name}` | {accuracy} | {row['p50_ms_one_review']:.3f} | {relative} | "
                     + " | ".join(f"{rates[size]:,.0f}" for size in sizes) + " |")
    if report.get("exports"):
        lines += exports.markdown(report["exports"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="conv1d")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path,
                        help="IMDB archive for real review payloads (default: from the data setting, IMDB_DATA_DIR)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per scenario")
    parser.add_argument("--workers", type=int, default=2, help="service uvicorn workers, as in docker-compose.yml")
    parser.add_argument("--skip-naive", action="store_true", help="skip the Keras baseline (needs TensorFlow)")
    parser.add_argument("--skip-exports", action="store_true",
                        help="skip (d), the current and rewritten exports side by side (needs TensorFlow)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    try:
        reviews = sampled_test_reviews(PAYLOAD_REVIEWS, args.data)
        tokenizer = load_tokenizer(read_metadata(args.model_dir / f"{args.model}.json"), args.model_dir)
    except (DataError, MetadataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tokens = tokenizer.encode_batch(reviews)
    started = time.perf_counter()
    tokenizer.encode_batch(reviews[:TOKENIZE_REVIEWS])
    tokenize_us = (time.perf_counter() - started) / TOKENIZE_REVIEWS * 1e6
    words = np.mean([len(r.split()) for r in reviews[:TOKENIZE_REVIEWS]])
    print(f"tokenization: {tokenize_us:.1f} µs per review ({words:.0f} words on average)", flush=True)

    print("(a) onnxruntime in-process", flush=True)
    by_threads = {threads: measure_limit(args.model_dir / f"{args.model}.onnx", tokens, threads, LIMIT_SECONDS)
                  for threads in (1, os.cpu_count())}
    for threads, by_batch in by_threads.items():
        print("  " + ", ".join(f"{threads} thr batch {b}: {r:,.0f}/s" for b, r in by_batch.items()), flush=True)
    best_limit, best_threads, best_batch_size = max(
        (rate, threads, batch_size)
        for threads, by_batch in by_threads.items() for batch_size, rate in by_batch.items())
    latencies = model_latencies(args.model_dir, reviews)
    for name, row in latencies.items():
        print(f"  {name}: {row['p50_ms_one_review']:.3f} ms per review alone, "
              + ", ".join(f"batch {size}: {rate:,.0f}/s" for size, rate in row["reviews_per_s_by_batch"].items()),
              flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        print(f"(b) service, {args.workers} worker(s)", flush=True)
        env = {"SENTIMENT_PORT": str(port), "SENTIMENT_MODEL_DIR": str(args.model_dir),
               "SENTIMENT_WORKERS": str(args.workers)}
        with server([sys.executable, "-m", "service"], env, port, "/readyz", folder / "service.log") as (url, pid):
            wait_for_workers(port, args.workers)
            service_rows = run_scenarios(f"{url}/predict?model={args.model}", SERVICE_SCENARIOS, reviews, folder,
                                         args.duration, "service", pid)
            print(f"(a) and (b) back to back, {PAIRED_ROUNDS} times", flush=True)
            pairs = paired_ratios(args.model_dir / f"{args.model}.onnx", tokens, best_threads, best_batch_size,
                                  f"{url}/predict?model={args.model}", write_bodies(reviews, 1, folder),
                                  args.duration, pid)
        naive_rows = []
        if not args.skip_naive:
            port = free_port()
            print("(c) naive Keras baseline", flush=True)
            command = [sys.executable, "-m", "uvicorn", "benchmarks.naive_server:app", "--port", str(port),
                       "--log-level", "warning"]
            env = {"NAIVE_MODEL": args.model, "NAIVE_MODEL_DIR": str(args.model_dir)}
            with server(command, env, port, "/predict", folder / "naive.log") as (url, pid):
                naive_rows = run_scenarios(f"{url}/predict", NAIVE_SCENARIOS, reviews, folder, args.duration, "naive",
                                           pid)

        exports_report = None
        if not args.skip_exports:
            exports_report = exports.run(args.model_dir, reviews, folder, args.duration, args.workers)

    def row(rows, concurrency, per_request=1):
        return next(r for r in rows if r["concurrency"] == concurrency and r["reviews_per_request"] == per_request)

    ratios = {
        "service_c32_over_limit": float(np.median([pair["ratio"] for pair in pairs])),
        "service_c32_over_sweep_limit": row(service_rows, 32)["reviews_per_s"] / best_limit,
        "service_c1_p50_ms": row(service_rows, 1)["p50_ms"],
        "service_over_naive_c32": (row(service_rows, 32)["reviews_per_s"] / row(naive_rows, 32)["reviews_per_s"]
                                   if naive_rows else None),
    }
    report = {
        "model": args.model, **run_stamp(), "duration_s": args.duration, "workers": args.workers,
        "tokenize_us_per_review": tokenize_us,
        "limit": {"best": best_limit, "best_threads": best_threads, "best_batch_size": best_batch_size,
                  "by_threads": by_threads},
        "models": latencies, "service": service_rows, "paired": pairs, "naive": naive_rows, "ratios": ratios,
        "exports": exports_report,
    }
    text = markdown(report)
    write_report(args.out, "latest", report, text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
