"""The exports before and after ``training/fold.py``'s rewrites, side by side in one run (issue #18).

The committed conv models are rewritten in place, so their current (unrewritten) exports are rebuilt here rather
than kept: each model's Keras weights (``models/keras/<name>.weights.h5``) go through the pipeline's export with
``rewrite=False`` (tf2onnx's graph, node for node and initializer for initializer the graph the committed export
was rewritten from: only tf2onnx's names, which count Keras layers, differ), and the committed graph's calibration
(every node ``training.calibrate.calibrated`` added, and its initializers) is grafted on after the logit, exactly
as it is. Before measuring, every rebuilt export's outputs are compared with the committed one's on the payload
reviews (``REBUILD_TOLERANCE``): that is both the check that the rebuild is the current export and the issue's
"every served model's scores equal the current export's" figure. A model without ``export`` rewrites in its
metadata (the bag models) is its own current export and is measured once.

(a') in-process, one onnxruntime thread, the current and the new export of each model alternate, round by
round, at batch 1 and batch 32; (b') the service at concurrency 32 (one review per request) on a folder of current
exports and on the committed one, both running, loaded in turn round by round (as ``benchmarks/ab.py``). The rates
are the medians over the rounds; each speedup is the median of the rounds' ratios (new over current, measured
within seconds of each other: this machine's speed drifts by tens of per cent within minutes).

    python -m benchmarks.exports [--rounds 5]    # this part alone; `python -m benchmarks` runs it too
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata, write_metadata
from artifacts.vocabulary import file_sha256
from benchmarks.measure import free_port, load, sampled_test_reviews, server, session, write_bodies
from benchmarks.procfs import wait_for_workers
from training.data import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
REBUILD_TOLERANCE = 1e-5
COMPARE_BATCH_SIZES = (1, 32)
COMPARE_REVIEWS = 512  # reviews each model scores per batch size and round; the rebuild is checked on them too
ROUNDS = 9
SERVICE_ROUNDS = 3
SERVICE_CONCURRENCY = 32


def current_exports(model_dir: Path, folder: Path, reviews: list[str]) -> tuple[Path, dict[str, dict]]:
    """A model folder like ``model_dir`` with each rewritten model's current export rebuilt (its metadata's
    checksum and size to match, its ``export`` record removed) and everything else linked; and, per rebuilt model,
    the largest output difference between the two on ``reviews``."""
    from training import fold

    current = folder / "current_models"
    current.mkdir()
    checks, tokenizers = {}, {}
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            (current / path.name).symlink_to(path.resolve())
    (current / "keras").symlink_to((model_dir / "keras").resolve())
    for onnx_path in sorted(model_dir.glob("*.onnx")):
        metadata = read_metadata(onnx_path.with_suffix(".json"))
        if metadata.export is None or not metadata.export.rewrites:
            continue
        rebuilt = fold.unrewritten_export(metadata.name, model_dir)
        tokens = load_tokenizer(metadata, model_dir, tokenizers).encode_batch(reviews)
        difference = fold.max_abs_difference(onnx_path.read_bytes(), rebuilt, tokens)
        if not difference <= REBUILD_TOLERANCE:
            raise RuntimeError(f"{metadata.name}: the rebuilt current export differs from the committed one by "
                               f"{difference:.3g} on {len(reviews)} reviews; it is not the current export")
        for suffix in (".onnx", ".json"):
            (current / f"{metadata.name}{suffix}").unlink()
        (current / f"{metadata.name}.onnx").write_bytes(rebuilt)
        write_metadata(metadata.model_copy(update={"onnx_sha256": file_sha256(current / f"{metadata.name}.onnx"),
                                                   "onnx_bytes": len(rebuilt), "export": None}),
                       current / f"{metadata.name}.json")
        checks[metadata.name] = {"max_abs_diff": difference, "reviews": len(reviews),
                                 "rewrites": list(metadata.export.rewrites), "bytes_current": len(rebuilt),
                                 "bytes_new": onnx_path.stat().st_size}
        print(f"  {metadata.name}: current export rebuilt, outputs within {difference:.2e} of the committed "
              f"(rewritten) export on {len(reviews)} reviews", flush=True)
    return current, checks


def _rate(model, name: str, tokens: np.ndarray, batch_size: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(tokens), batch_size):
        model.run(None, {name: tokens[start:start + batch_size]})
    return len(tokens) / (time.perf_counter() - started)


def compare_in_process(current: Path, new: Path, reviews: list[str], rounds: int = ROUNDS) -> dict[str, dict]:
    """Reviews/s of each model's current and new export, one onnxruntime thread, at COMPARE_BATCH_SIZES: the two
    alternate within each round (which goes first alternates too); medians over ``rounds``."""
    results, tokenizers = {}, {}
    for onnx_path in sorted(new.glob("*.onnx")):
        metadata = read_metadata(onnx_path.with_suffix(".json"))
        tokens = load_tokenizer(metadata, new, tokenizers).encode_batch(reviews)
        rewritten = metadata.export is not None and bool(metadata.export.rewrites)
        variants = {"new": session(onnx_path, threads=1)}
        if rewritten:
            variants["current"] = session(current / onnx_path.name, threads=1)
        names = {label: model.get_inputs()[0].name for label, model in variants.items()}
        for label, model in variants.items():  # warm-up
            _rate(model, names[label], tokens[:64], 32)
        rates = {label: {size: [] for size in COMPARE_BATCH_SIZES} for label in variants}
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for size in COMPARE_BATCH_SIZES:
                for label in order:
                    rates[label][size].append(_rate(variants[label], names[label], tokens, size))
        row = {"rewrites": list(metadata.export.rewrites) if rewritten else [],
               "test_accuracy": metadata.test_accuracy}
        for label in variants:
            row[label] = {size: float(statistics.median(values)) for size, values in rates[label].items()}
        if rewritten:  # the median of each round's ratio: both measured within seconds of each other
            row["speedup"] = {size: float(statistics.median(new / current for new, current in zip(
                rates["new"][size], rates["current"][size], strict=True))) for size in COMPARE_BATCH_SIZES}
        results[metadata.name] = row
        print(f"  {metadata.name}: " + ", ".join(
            f"batch {size}: " + (f"{row['current'][size]:,.0f} -> " if rewritten else "")
            + f"{row['new'][size]:,.0f}/s" + (f" ({row['speedup'][size]:.2f}x)" if rewritten else "")
            for size in COMPARE_BATCH_SIZES), flush=True)
    return results


def compare_service(current: Path, new: Path, models: list[str], reviews: list[str], folder: Path,
                    duration: float, workers: int, rounds: int = SERVICE_ROUNDS) -> dict[str, dict]:
    """The service at SERVICE_CONCURRENCY (one review per request) on the current exports and on the new ones:
    both services run; each round loads each model's current and new export back to back (which first alternates
    between rounds); medians, and the median of the rounds' ratios."""
    bodies = write_bodies(reviews, 1, folder)
    running = {}
    with tempfile.TemporaryDirectory(prefix="exports-", dir=folder) as logs, contextlib.ExitStack() as stack:
        for label, model_dir in (("current", current), ("new", new)):
            port = free_port()
            env = {"SENTIMENT_PORT": str(port), "SENTIMENT_MODEL_DIR": str(model_dir),
                   "SENTIMENT_WORKERS": str(workers)}
            running[label] = stack.enter_context(server([sys.executable, "-m", "service"], env, port, "/readyz",
                                                        Path(logs) / f"{label}.log"))
            wait_for_workers(port, workers)
        rows = {(model, label): [] for model in models for label in running}
        for round_number in range(rounds):
            # each model's two exports back to back, the first of them alternating between rounds
            labels = list(running) if round_number % 2 == 0 else list(reversed(running))
            for model, label in [(model, label) for model in models for label in labels]:
                url, pid = running[label]
                result = load(f"{url}/predict?model={model}", bodies, SERVICE_CONCURRENCY, duration, pid)
                rows[(model, label)].append(result)
                print(f"  round {round_number + 1} {model} {label:>7}: {result['requests_per_s']:8,.0f} "
                      f"reviews/s, p50 {result['p50_ms']:.2f} ms, errors {result['errors']}", flush=True)
    results = {}
    for model in models:
        row = {}
        for label in running:
            measured = rows[(model, label)]
            row[label] = {"reviews_per_s": float(statistics.median(r["requests_per_s"] for r in measured)),
                          "p50_ms": float(statistics.median(r["p50_ms"] for r in measured)),
                          "errors": sum(r["errors"] for r in measured),
                          "rounds": [r["requests_per_s"] for r in measured]}
        row["speedup"] = float(statistics.median(new["requests_per_s"] / current["requests_per_s"] for new, current in
                                                 zip(rows[(model, "new")], rows[(model, "current")], strict=True)))
        results[model] = row
    return results


def current_exports_apart(model_dir: Path, folder: Path, reviews: list[str]) -> tuple[Path, dict[str, dict]]:
    """``current_exports`` in another process, so that TensorFlow (the rebuild's) is not loaded, nor its threads
    alive, in the process that measures onnxruntime."""
    reviews_file = folder / "rebuild_reviews.json"
    reviews_file.write_text(json.dumps(reviews))
    child = subprocess.run([sys.executable, "-m", "benchmarks.exports", "--model-dir", str(model_dir),
                            "--rebuild-into", str(folder), "--reviews-file", str(reviews_file)], cwd=REPO_ROOT,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True)
    print(child.stdout, end="", flush=True)
    if child.returncode:
        raise RuntimeError(f"rebuilding the current exports failed:\n{child.stderr}")
    return folder / "current_models", json.loads((folder / "rebuild_checks.json").read_text())


def run(model_dir: Path, reviews: list[str], folder: Path, duration: float, workers: int,
        rounds: int = ROUNDS, service_rounds: int = SERVICE_ROUNDS) -> dict:
    """Everything above, for ``python -m benchmarks``: the rebuild checks, (a') and (b')."""
    print("(d) current and rewritten exports: rebuilding the current ones from the Keras weights", flush=True)
    current, checks = current_exports_apart(model_dir, folder, reviews[:COMPARE_REVIEWS])
    print("(d) in-process, 1 onnxruntime thread, current and new alternating", flush=True)
    in_process = compare_in_process(current, model_dir, reviews[:COMPARE_REVIEWS], rounds)
    service = {}
    if service_rounds:
        print(f"(d) service at concurrency {SERVICE_CONCURRENCY}, {workers} worker(s), current and new", flush=True)
        service = compare_service(current, model_dir, sorted(checks), reviews, folder, duration, workers,
                                  service_rounds)
    return {"checks": checks, "in_process": in_process, "service": service, "rounds": rounds,
            "service_rounds": service_rounds, "reviews": min(len(reviews), COMPARE_REVIEWS)}


TARGETS = {  # issue #18's done-when, on this machine, one onnxruntime thread
    ("conv1d", 1): 3.0, ("conv1d", 32): 2.0, ("conv_lstm", 1): 2.0, ("conv_lstm_tuned", 1): 3.0,
}
SERVICE_TARGETS = {"conv1d": 1.8}


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def markdown(report: dict) -> list[str]:
    """The section of the benchmark's report."""
    lines = ["", f"Current and rewritten exports (training/fold.py; the current ones rebuilt from the Keras weights "
                 f"and checked): reviews/s in-process, 1 onnxruntime thread, medians of {report['rounds']} "
                 f"alternating rounds on {report['reviews']} test reviews:", "",
             "| model | rewrites | outputs vs current (max abs diff) | MB current → new | "
             + " | ".join(f"batch {size}: current | batch {size}: new | batch {size}: speedup"
                          for size in COMPARE_BATCH_SIZES) + " |",
             "|---|---|---|---|" + "---|---|---|" * len(COMPARE_BATCH_SIZES)]
    for name, row in report["in_process"].items():
        check = report["checks"].get(name)
        cells = []
        for size in COMPARE_BATCH_SIZES:
            if "current" in row:
                target = TARGETS.get((name, size))
                mark = "" if target is None else f" (target ≥ {target:g}×: {verdict(row['speedup'][size] >= target)})"
                cells += [f"{row['current'][size]:,.0f}", f"{row['new'][size]:,.0f}",
                          f"**{row['speedup'][size]:.2f}×**{mark}"]
            else:
                cells += ["–", f"{row['new'][size]:,.0f}", "–"]
        lines.append(f"| `{name}` | {', '.join(row['rewrites']) or 'none'} | "
                     + (f"{check['max_abs_diff']:.1e}" if check else "–") + " | "
                     + (f"{check['bytes_current'] / 1e6:.1f} → {check['bytes_new'] / 1e6:.1f}" if check else "–")
                     + " | " + " | ".join(cells) + " |")
    if report["checks"]:
        worst = max(check["max_abs_diff"] for check in report["checks"].values())
        lines += ["", f"- Every rewritten model's outputs (score and logit) within {worst:.1e} of its current "
                      f"export's on {report['reviews']} test reviews (target ≤ 1e-5: "
                      f"{'met' if worst <= 1e-5 else 'missed'})."]
    if report["service"]:
        lines += ["", f"The service at concurrency {SERVICE_CONCURRENCY}, 1 review per request, current and new "
                      f"exports both served, loaded in turn; medians of {report['service_rounds']} rounds:", "",
                  "| model | current reviews/s | new reviews/s | speedup | p50 ms current → new | errors |",
                  "|---|---|---|---|---|---|"]
        for name, row in report["service"].items():
            target = SERVICE_TARGETS.get(name)
            mark = "" if target is None else f" (target ≥ {target:g}×: {verdict(row['speedup'] >= target)})"
            lines.append(f"| `{name}` | {row['current']['reviews_per_s']:,.0f} | {row['new']['reviews_per_s']:,.0f} "
                         f"| **{row['speedup']:.2f}×**{mark} | {row['current']['p50_ms']:.2f} → "
                         f"{row['new']['p50_ms']:.2f} | {row['current']['errors'] + row['new']['errors']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exports", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--data", type=Path, help="IMDB archive (default: the data setting)")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--service-rounds", type=int, default=SERVICE_ROUNDS, help="0 skips the service")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per service measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--rebuild-into", type=Path, help=argparse.SUPPRESS)  # current_exports_apart's child
    parser.add_argument("--reviews-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rebuild_into:
        _, checks = current_exports(args.model_dir, args.rebuild_into, json.loads(args.reviews_file.read_text()))
        (args.rebuild_into / "rebuild_checks.json").write_text(json.dumps(checks))
        return 0
    try:
        reviews = sampled_test_reviews(4096, args.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="exports-") as scratch:
        report = run(args.model_dir, reviews, Path(scratch), args.duration, args.workers, args.rounds,
                     args.service_rounds)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print("\n".join(markdown(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
