"""The Open Inference Protocol's binary tensor data extension against plain JSON, for batches of 256 reviews.

    python -m benchmarks.v2_binary [--models bigram_bag conv1d] [--batch 256] [--requests 10] [--rounds 5] \
        [--out FOLDER]

``python -m service`` (one worker) on loopback; NVIDIA's ``tritonclient`` (HTTP) sends batches of real IMDB test
reviews (drawn with a fixed seed) to ``POST /v2/models/{model}/infer``, one request at a time, each way:

* ``text`` JSON: the reviews as a BYTES input in the JSON body, the outputs as JSON (``binary_data=False``);
* ``text`` binary: the same with binary tensor data both ways (tritonclient's default);
* ``tokens`` JSON and binary: the reviews tokenized by the client, an INT32 [256, 500] input.

Each request is timed as a client sees it: building the inputs, the call, reading the outputs. The ways take turns
in every round, so a drift of the machine's speed (or other work on it) touches them alike; the result per way is
the median over all its requests, with the server's CPU per request (its event loop, and the other threads:
inference) and the client's. Every way must return the same scores.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata
from benchmarks.__main__ import run_stamp, write_report
from benchmarks.measure import free_port, server
from benchmarks.procfs import thread_cpu_seconds
from training.data import DataError, dataset_path, load_imdb, require_data_file

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 0
WAYS = [("text", False), ("text", True), ("tokens", False), ("tokens", True)]  # (input, binary data)


def way_name(way: tuple[str, bool]) -> str:
    return f"{way[0]} {'binary' if way[1] else 'JSON'}"


def infer(client: httpclient.InferenceServerClient, model: str, way: tuple[str, bool], reviews: np.ndarray,
          tokens: np.ndarray) -> np.ndarray:
    """One request the given way, inputs built and outputs read as a client does; the scores."""
    name, binary = way
    if name == "text":
        tensor = httpclient.InferInput("text", [len(reviews)], "BYTES")
        tensor.set_data_from_numpy(reviews, binary_data=binary)
    else:
        tensor = httpclient.InferInput("tokens", list(tokens.shape), "INT32")
        tensor.set_data_from_numpy(tokens, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("score", binary_data=binary),
               httpclient.InferRequestedOutput("label", binary_data=binary)]
    result = client.infer(model, [tensor], outputs=outputs)
    result.as_numpy("label")
    return result.as_numpy("score")


def measure(url: str, model: str, batches: list[tuple[np.ndarray, np.ndarray]], requests: int, rounds: int,
            server_pid: int | None = None, ways: list[tuple[str, bool]] = WAYS) -> dict[str, dict]:
    """Per way: median latency, reviews/s, server and client CPU per request, over ``rounds`` rounds of
    ``requests`` requests per way (the ways take turns, the first of each round rotating)."""
    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=300)
    try:
        scores = {way: infer(client, model, way, *batches[0]) for way in ways}  # warm-up, and the same answers
        reference = scores[ways[0]]
        for way, answer in scores.items():
            if not np.array_equal(answer, reference):
                raise AssertionError(f"{way_name(way)} scores differ from {way_name(ways[0])}'s")
        times: dict = {way: [] for way in ways}
        server_cpu: dict = {way: {"event_loop": 0.0, "other_threads": 0.0} for way in ways}
        client_cpu = dict.fromkeys(ways, 0.0)
        for round_number in range(rounds):
            shift = round_number % len(ways)
            for way in ways[shift:] + ways[:shift]:
                before = thread_cpu_seconds(server_pid) if server_pid else None
                cpu_started = time.process_time()
                for index in range(requests):
                    reviews, tokens = batches[(round_number * requests + index) % len(batches)]
                    started = time.perf_counter()
                    infer(client, model, way, reviews, tokens)
                    times[way].append(time.perf_counter() - started)
                client_cpu[way] += time.process_time() - cpu_started
                if before is not None:
                    after = thread_cpu_seconds(server_pid)
                    for part in before:
                        server_cpu[way][part] += after[part] - before[part]
    finally:
        client.close()
    batch = len(batches[0][0])
    results = {}
    for way in ways:
        count = len(times[way])
        median = statistics.median(times[way])
        results[way_name(way)] = {
            "requests": count, "p50_ms": median * 1000, "reviews_per_s": batch / median,
            "server_cpu_ms_per_request": {part: seconds / count * 1000 for part, seconds in server_cpu[way].items()},
            "client_cpu_ms_per_request": client_cpu[way] / count * 1000}
    return results


def markdown(report: dict) -> str:
    before, after = report["load_average"]
    busy = " (other work on the machine: the absolute times are inflated; the ways took turns, so they compare)" \
        if max(before, after) > 1.5 else ""
    lines = [f"Open Inference Protocol, binary tensor data against JSON: batches of {report['batch']} IMDB test "
             f"reviews, tritonclient {report['tritonclient']} over loopback, one request at a time, one service "
             f"worker; {report['machine']['cpu']} ({report['machine']['cores']} cores), {report['date']}; "
             f"`{report['command']}`; load average (1 min) {before:.1f} before, {after:.1f} after{busy}.", "",
             "| model | way | p50 ms per request | reviews/s | server CPU ms/request: event loop + other threads "
             "| client CPU ms/request | JSON p50 ÷ binary p50 |", "|---|---|---|---|---|---|---|"]
    for model, rows in report["models"].items():
        for way, row in rows.items():
            cpu = row["server_cpu_ms_per_request"]
            name, kind = way.split()
            versus = ""
            if kind == "binary":
                versus = f"**{rows[f'{name} JSON']['p50_ms'] / row['p50_ms']:.2f}×**"
            lines.append(f"| `{model}` | {way} | {row['p50_ms']:.1f} | {row['reviews_per_s']:,.0f} | "
                         f"{cpu['event_loop']:.1f} + {cpu['other_threads']:.1f} "
                         f"| {row['client_cpu_ms_per_request']:.1f} | {versus} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.v2_binary", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["bigram_bag", "conv1d"])
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, help="IMDB archive (default: from the data setting, IMDB_DATA_DIR)")
    parser.add_argument("--batch", type=int, default=256, help="reviews per request (SENTIMENT_MAX_REVIEWS at most)")
    parser.add_argument("--batches", type=int, default=8, help="different batches the requests cycle through")
    parser.add_argument("--requests", type=int, default=10, help="requests per way and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="folder to write v2_binary.{md,json} to (default: print only)")
    args = parser.parse_args(argv)
    try:
        texts = load_imdb(args.data or require_data_file(dataset_path()))["test"].texts
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    drawn = random.Random(SEED).sample(texts, args.batch * args.batches)
    load_before = os.getloadavg()[0]
    report_models = {}
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        env = {"SENTIMENT_PORT": str(port), "SENTIMENT_MODEL_DIR": str(args.model_dir), "SENTIMENT_WORKERS": "1",
               "SENTIMENT_ACCESS_LOG": "false"}
        log = Path(scratch) / "service.log"
        with server([sys.executable, "-m", "service"], env, port, "/readyz", log) as (url, pid):
            for model in args.models:
                tokenizer = load_tokenizer(read_metadata(args.model_dir / f"{model}.json"), args.model_dir)
                batches = []
                for start in range(0, len(drawn), args.batch):
                    chunk = drawn[start:start + args.batch]
                    batches.append((np.array(chunk, dtype=object), tokenizer.encode_batch(chunk)))
                print(f"{model}: {len(WAYS)} ways × {args.rounds} rounds × {args.requests} requests of {args.batch} "
                      "reviews", flush=True)
                report_models[model] = rows = measure(url, model, batches, args.requests, args.rounds, pid)
                for way, row in rows.items():
                    cpu = row["server_cpu_ms_per_request"]
                    print(f"  {way:>14}: p50 {row['p50_ms']:7.1f} ms, {row['reviews_per_s']:7,.0f} reviews/s, server "
                          f"CPU {cpu['event_loop']:.1f} + {cpu['other_threads']:.1f} ms/request, client CPU "
                          f"{row['client_cpu_ms_per_request']:.1f} ms/request", flush=True)
    report = {**run_stamp("benchmarks.v2_binary", argv), "load_average": [load_before, os.getloadavg()[0]],
              "batch": args.batch, "tritonclient": version("tritonclient"), "models": report_models}
    text = markdown(report)
    print("\n" + text)
    if args.out:
        write_report(args.out, "v2_binary", report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
