"""Throughput and latency, measured side by side on this machine:

(a) the limit: onnxruntime in-process on pre-tokenized batches;
(b) the service over HTTP on loopback, driven by a load generator in another process;
(c) the naive baseline: Keras ``model.predict`` per request in a minimal FastAPI app;

and, for the (b)/(a) target, (a) at its best setting and (b) at concurrency 32 back to back, three
times, since this machine's speed drifts by several per cent within minutes.

    python -m benchmarks            # writes benchmarks/results/latest.{md,json}
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort

from training.data import load_imdb
from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"
SERVICE_SCENARIOS = [(1, 1), (8, 1), (32, 1), (128, 1), (8, 32)]  # (concurrency, reviews per request)
NAIVE_SCENARIOS = [(1, 1), (32, 1)]
LIMIT_BATCH_SIZES = [1, 8, 32, 64, 128]
# This machine's speed drifts by several per cent within minutes, so the target ratio pairs (a) and
# (b) measured back to back: this many times the limit's best setting, then the service at c=32.
PAIRED_ROUNDS = 3
PAIRED_CONCURRENCY = 32
MODEL_BATCH_SIZES = [1, 8, 16, 32, 64]  # what SENTIMENT_BATCH_MAX_SIZE(S) should be, per model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": ort.__version__, "numpy": np.__version__, "platform": platform.platform()}


def measure_limit(model_path: Path, tokens: np.ndarray, threads: int, seconds: float,
                  batch_sizes: list[int] = LIMIT_BATCH_SIZES) -> dict[int, float]:
    """Reviews/s of bare onnxruntime at each batch size."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    results = {}
    for batch_size in batch_sizes:
        batches = [tokens[i:i + batch_size] for i in range(0, len(tokens) - batch_size + 1, batch_size)]
        session.run(None, {name: batches[0]})
        done, started, index = 0, time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            session.run(None, {name: batches[index % len(batches)]})
            done += batch_size
            index += 1
        results[batch_size] = done / (time.perf_counter() - started)
    return results


def model_latencies(model_dir: Path, reviews: list[str]) -> dict[str, dict]:
    """Every served model in-process, one onnxruntime thread: p50 for one review alone, and reviews/s
    at each batch size of MODEL_BATCH_SIZES."""
    results = {}
    for path in sorted(model_dir.glob("*.onnx")):
        metadata = json.loads(path.with_suffix(".json").read_text())
        tokenizer = Tokenizer(load_word_index(model_dir / metadata["vocabulary"]["file"]),
                              metadata["num_words"], metadata["max_len"])
        tokens = tokenizer.encode_batch(reviews[:512])
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        singles = []
        for row in tokens[:300]:
            started = time.perf_counter()
            session.run(None, {name: row[None]})
            singles.append(time.perf_counter() - started)
        by_batch = {}
        for batch_size in MODEL_BATCH_SIZES:
            started = time.perf_counter()
            for start in range(0, 512, batch_size):
                session.run(None, {name: tokens[start:start + batch_size]})
            by_batch[batch_size] = 512 / (time.perf_counter() - started)
        results[path.stem] = {"p50_ms_one_review": float(np.median(singles[20:]) * 1000),
                              "reviews_per_s_by_batch": by_batch,
                              "test_accuracy": metadata["test_metrics"]["accuracy"]}
    return results


TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"  # states as /proc/net/tcp writes them


def tcp_sockets(port: int) -> list[tuple[str, str]]:
    """(state, inode) of every TCP socket whose local port is ``port`` (Linux /proc, IPv4 and IPv6)."""
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.append((fields[3], fields[9]))
    return sockets


def listening_sockets(port: int) -> int:
    """Sockets in LISTEN state on ``port``: one per service worker that is serving."""
    return sum(state == TCP_LISTEN for state, _ in tcp_sockets(port))


def wait_for_workers(port: int, workers: int, timeout: float = 60) -> None:
    """/readyz answers from whichever worker is up first; a load test starts when all of them listen."""
    deadline = time.monotonic() + timeout
    while listening_sockets(port) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {listening_sockets(port)} of {workers} workers listen on port {port}")
        time.sleep(0.1)


@contextlib.contextmanager
def server(command: list[str], env: dict, port: int, ready_path: str, log_path: Path):
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log,
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


def thread_cpu_seconds(root_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the process tree under ``root_pid`` (Linux /proc), split into the
    processes' main threads (the event loops) and their other threads (inference)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"event_loop": 0.0, "other_threads": 0.0}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            pending += [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            for task in Path(f"/proc/{pid}/task").iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
                totals["event_loop" if task.name == str(pid) else "other_threads"] += seconds
    return totals


def load(url: str, bodies_file: Path, concurrency: int, duration: float, server_pid: int | None = None) -> dict:
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
            lines.append(f"| {label} | {row['concurrency']} | {row['reviews_per_request']} | {row['reviews_per_s']:,.0f} "
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
        lines.append(f"| `{name}` | {row['test_accuracy']:.4f} | {row['p50_ms_one_review']:.3f} | {relative} | "
                     + " | ".join(f"{rates[size]:,.0f}" for size in sizes) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="conv1d")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="IMDB archive for real review payloads")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per scenario")
    parser.add_argument("--workers", type=int, default=2, help="service uvicorn workers, as in docker-compose.yml")
    parser.add_argument("--skip-naive", action="store_true", help="skip the Keras baseline (needs TensorFlow)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    test = load_imdb(args.data)["test"]
    reviews = random.Random(0).sample(test.texts, 4096)
    metadata = json.loads((args.model_dir / f"{args.model}.json").read_text())
    tokenizer = Tokenizer(load_word_index(args.model_dir / metadata["vocabulary"]["file"]),
                          metadata["num_words"], metadata["max_len"])
    tokens = tokenizer.encode_batch(reviews)
    started = time.perf_counter()
    tokenizer.encode_batch(reviews[:1000])
    tokenize_us = (time.perf_counter() - started) / 1000 * 1e6
    words = np.mean([len(r.split()) for r in reviews[:1000]])
    print(f"tokenization: {tokenize_us:.1f} µs per review ({words:.0f} words on average)", flush=True)

    print("(a) onnxruntime in-process", flush=True)
    by_threads = {threads: measure_limit(args.model_dir / f"{args.model}.onnx", tokens, threads, 2.0)
                  for threads in (1, os.cpu_count())}
    for threads, by_batch in by_threads.items():
        print("  " + ", ".join(f"{threads} thr batch {b}: {r:,.0f}/s" for b, r in by_batch.items()), flush=True)
    best_limit, best_threads, best_batch_size = max(
        (rate, threads, batch_size) for threads, by_batch in by_threads.items() for batch_size, rate in by_batch.items())
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
        "model": args.model, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "duration_s": args.duration, "workers": args.workers,
        "tokenize_us_per_review": tokenize_us,
        "limit": {"best": best_limit, "best_threads": best_threads, "best_batch_size": best_batch_size,
                  "by_threads": by_threads},
        "models": latencies, "service": service_rows, "paired": pairs, "naive": naive_rows, "ratios": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(report))
    print("\n" + markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
