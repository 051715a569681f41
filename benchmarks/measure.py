"""The benchmark's measurements: (a) onnxruntime in-process, every served model alone, the load generator
against a running server (with the server's CPU per request), and the (a)/(b) pairs measured back to back.
``python -m benchmarks`` (``benchmarks/__main__.py``) runs them and writes the report."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
from benchmarks.procfs import thread_cpu_seconds
from training.data import DataError, dataset_path, load_imdb, require_data_file

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMIT_BATCH_SIZES = [1, 8, 32, 64, 128]
MODEL_BATCH_SIZES = [1, 8, 16, 32, 64]  # what SENTIMENT_BATCH_MAX_SIZE(S) should be, per model
MODEL_REVIEWS = 512  # reviews each model scores per batch size
SINGLE_REVIEWS, SINGLE_WARMUP = 300, 20  # one-review latencies measured, and the first ones not counted
# This machine's speed drifts by several per cent within minutes, so the target ratio pairs (a) and
# (b) measured back to back: this many times the limit's best setting, then the service at c=32.
PAIRED_ROUNDS = 3
PAIRED_CONCURRENCY = 32


def sampled_test_reviews(count: int, data: Path | None = None) -> list[str]:
    """``count`` IMDB test reviews drawn with seed 0, the same ones in every benchmark, from ``data`` (an archive or
    folder) or the data setting; DataError when the data is missing or holds fewer."""
    texts = load_imdb(data or require_data_file(dataset_path()))["test"].texts
    if count > len(texts):
        raise DataError(f"the data holds {len(texts)} test reviews; {count} are needed")
    return random.Random(0).sample(texts, count)


def session(model_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def measure_limit(model_path: Path, tokens: np.ndarray, threads: int, seconds: float,
                  batch_sizes: list[int] = LIMIT_BATCH_SIZES) -> dict[int, float]:
    """Reviews/s of bare onnxruntime at each batch size."""
    model = session(model_path, threads)
    name = model.get_inputs()[0].name
    results = {}
    for batch_size in batch_sizes:
        batches = [tokens[i:i + batch_size] for i in range(0, len(tokens) - batch_size + 1, batch_size)]
        model.run(None, {name: batches[0]})
        done, started, index = 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            model.run(None, {name: batches[index % len(batches)]})
            done += batch_size
            index += 1
        results[batch_size] = done / (time.perf_counter() - started)
    return results


def model_latencies(model_dir: Path, reviews: list[str]) -> dict[str, dict]:
    """Every served model in-process, one onnxruntime thread: p50 for one review alone, and reviews/s
    at each batch size of MODEL_BATCH_SIZES."""
    results, tokenizers = {}, {}
    for path in sorted(model_dir.glob("*.onnx")):
        metadata = read_metadata(path.with_suffix(".json"))
        tokens = load_tokenizer(metadata, model_dir, tokenizers).encode_batch(reviews[:MODEL_REVIEWS])
        model = session(path, threads=1)
        name = model.get_inputs()[0].name
        singles = []
        for row in tokens[:SINGLE_REVIEWS]:
            started = time.perf_counter()
            model.run(None, {name: row[None]})
            singles.append(time.perf_counter() - started)
        by_batch = {}
        for batch_size in MODEL_BATCH_SIZES:
            started = time.perf_counter()
            for start in range(0, len(tokens), batch_size):
                model.run(None, {name: tokens[start:start + batch_size]})
            by_batch[batch_size] = len(tokens) / (time.perf_counter() - started)
        results[path.stem] = {"p50_ms_one_review": float(np.median(singles[SINGLE_WARMUP:]) * 1000),
                              "reviews_per_s_by_batch": by_batch,
                              "test_accuracy": metadata.test_accuracy}
    return results


def load(url: str, bodies_file: Path, concurrency: int, duration: float, server_pid: int | None = None) -> dict:
    """The load generator (another process) against ``url``, with the server's CPU per request."""
    before = thread_cpu_seconds(server_pid) if server_pid else None
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", "--url", url, "--bodies", str(bodies_file),
         "--concurrency", str(concurrency), "--duration", str(duration)],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    result = json.loads(output)
    if before is not None:
        after = thread_cpu_seconds(server_pid)
        result["server_cpu_us_per_request"] = {
            part: (after[part] - before[part]) / max(result["requests_with_warmup"], 1) * 1e6 for part in before}
    return result


def write_bodies(reviews: list[str], per_request: int, folder: Path) -> Path:
    bodies = [{"reviews": reviews[i:i + per_request]} for i in range(0, len(reviews) - per_request + 1, per_request)]
    path = folder / f"bodies_{per_request}.json"
    path.write_text(json.dumps(bodies))
    return path


def run_scenarios(url: str, scenarios, reviews, folder: Path, duration: float, label: str,
                  server_pid: int) -> list[dict]:
    rows = []
    for concurrency, per_request in scenarios:
        result = load(url, write_bodies(reviews, per_request, folder), concurrency, duration, server_pid)
        result.update(reviews_per_request=per_request, reviews_per_s=result["requests_per_s"] * per_request)
        cpu = result["server_cpu_us_per_request"]
        print(f"  {label} c={concurrency:<3} {per_request:>2}/req: {result['reviews_per_s']:8.1f} reviews/s  "
              f"p50 {result['p50_ms']:.2f} ms  p95 {result['p95_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
              f"errors {result['errors']}  CPU µs/request: event loops {cpu['event_loop']:.0f}, other threads "
              f"{cpu['other_threads']:.0f}, load generator {result['client_cpu_us_per_request']:.0f}", flush=True)
        rows.append(result)
    return rows


def paired_ratios(model_path: Path, tokens: np.ndarray, threads: int, batch_size: int, url: str, bodies: Path,
                  duration: float, server_pid: int) -> list[dict]:
    """(a) at its best setting, then (b) at PAIRED_CONCURRENCY with one review per request, right after
    each other, PAIRED_ROUNDS times: both sides of each ratio see the machine in the same state."""
    pairs = []
    for _ in range(PAIRED_ROUNDS):
        limit = measure_limit(model_path, tokens, threads, duration, [batch_size])[batch_size]
        served = load(url, bodies, PAIRED_CONCURRENCY, duration, server_pid)
        pairs.append({"limit": limit, "service": served["requests_per_s"], "errors": served["errors"],
                      "ratio": served["requests_per_s"] / limit})
        print(f"  paired: limit {limit:,.0f}/s, service c={PAIRED_CONCURRENCY} {served['requests_per_s']:,.0f}/s, "
              f"ratio {pairs[-1]['ratio']:.3f}, errors {served['errors']}", flush=True)
    return pairs


@contextlib.contextmanager
def server(command: list[str], env: dict, port: int, ready_path: str, log_path: Path, cwd: Path = REPO_ROOT):
    """A server process started in ``cwd``, once ``ready_path`` answers; yields (base URL, pid)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited; see {log_path}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code in (200, 405):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start; see {log_path}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
