"""Side-by-side comparison of service variants at one concurrency, measured in one run.

Each variant is the service from a checkout (this one, or another: the commit before a change) with
extra environment variables. All variants start together, then each round loads every one of them
in turn, back to back, the order rotating between rounds, so a drift of the machine's speed touches
them alike; the medians over the rounds are the result.

    python -m benchmarks.ab --variant fast=. --variant router=.:SENTIMENT_FAST_PATH=false \\
        --variant before=../before:          # e.g. a `git worktree add ../before HEAD~1`
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import free_port, load, sampled_test_reviews, server, write_bodies
from benchmarks.procfs import wait_for_workers
from training.data import DataError

REVIEWS = 4096


@dataclass(frozen=True)
class Variant:
    label: str
    checkout: Path
    env: dict[str, str]

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``LABEL=CHECKOUT[:ENV=VALUE,ENV=VALUE]``."""
        label, _, rest = spec.partition("=")
        checkout, _, settings = rest.partition(":")
        if not label or not checkout:
            raise argparse.ArgumentTypeError(f"{spec!r}: expected LABEL=CHECKOUT[:ENV=VALUE,...]")
        env = dict(item.split("=", 1) for item in settings.split(",") if item)
        return cls(label, Path(checkout).resolve(), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", type=Variant.parse, action="append", required=True,
                        help="LABEL=CHECKOUT[:ENV=VALUE,...], two or more")
    parser.add_argument("--model", default="conv1d")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of load per variant and round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, help="IMDB archive for the review payloads (default: the data setting)")
    args = parser.parse_args(argv)
    try:
        reviews = sampled_test_reviews(REVIEWS, args.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="sentiment-ab-") as folder, contextlib.ExitStack() as stack:
        bodies = write_bodies(reviews, 1, Path(folder))
        running = []
        for variant in args.variant:
            port = free_port()
            env = {"SENTIMENT_PORT": str(port), "SENTIMENT_WORKERS": str(args.workers),
                   "SENTIMENT_MODEL_DIR": str(variant.checkout / "models"), **variant.env}
            url, pid = stack.enter_context(server([sys.executable, "-m", "service"], env, port, "/readyz",
                                                  Path(folder) / f"{variant.label}.log", cwd=variant.checkout))
            wait_for_workers(port, args.workers)
            running.append((variant, f"{url}/predict?model={args.model}", pid))
        rows: dict[str, list[dict]] = {variant.label: [] for variant, _, _ in running}
        for round_number in range(args.rounds):
            shift = round_number % len(running)
            for variant, url, pid in running[shift:] + running[:shift]:
                result = load(url, bodies, args.concurrency, args.duration, pid)
                cpu = result["server_cpu_us_per_request"]
                rows[variant.label].append(result)
                print(f"round {round_number + 1} {variant.label:>12}: {result['requests_per_s']:8,.0f} reviews/s, "
                      f"p50 {result['p50_ms']:.2f} ms, errors {result['errors']}, server CPU µs/request: "
                      f"event loops {cpu['event_loop']:.0f} + other threads {cpu['other_threads']:.0f}", flush=True)
    print(f"\nmedians over {args.rounds} rounds, {args.model}, concurrency {args.concurrency}, 1 review/request:")
    for label, results in rows.items():
        loops = statistics.median(r["server_cpu_us_per_request"]["event_loop"] for r in results)
        threads = statistics.median(r["server_cpu_us_per_request"]["other_threads"] for r in results)
        print(f"  {label:>12}: {statistics.median(r['requests_per_s'] for r in results):8,.0f} reviews/s, "
              f"p50 {statistics.median(r['p50_ms'] for r in results):.2f} ms, CPU µs/request {loops:.0f} + "
              f"{threads:.0f}, errors {sum(r['errors'] for r in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
