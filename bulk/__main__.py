"""``python -m bulk``: score a corpus of reviews on Ray Data into Parquet (``--help``; README "Bulk scoring on Ray")."""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import ValidationError

from bulk.output import OutputError, check_output
from bulk.scoring import BatchScorer
from bulk.sources import InputError, check_archive, open_source
from service.config import Settings
from service.repository import ModelLoadError
from service.scoring import ScoringError
from training.data import SPLITS

DEFAULT_BATCH_SIZE = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bulk", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score every review of a file, folder or the aclImdb archive with the service's models, on Ray "
                    "Data, into Parquet: id, and per model score_<model> and label_<model>. Rows that cannot be "
                    "scored go with their id and the reason to <output>.bad_rows.jsonl.",
        epilog="Inputs: .jsonl (text, optional id), .csv (a text column, optional id), .parquet, a folder of .txt "
               "files (id = file name), the aclImdb .tar.gz archive (id = e.g. test/pos/1234_9.txt), or a folder of "
               ".jsonl/.csv/.parquet files. Output: a .parquet file, or any other name for a folder of parts. The "
               "models, their checks and the limits are the service's (SENTIMENT_* settings, python -m service "
               "--help).")
    parser.add_argument("--input", required=True, type=Path, metavar="PATH", help="what to score")
    parser.add_argument("--output", required=True, type=Path, metavar="PATH",
                        help="Parquet file (name ending in .parquet) or folder of parts (any other name)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help="models to score with, or 'all' (default: the service's default model)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None, metavar="RAY_ADDRESS",
                        help="join this Ray cluster, e.g. 10.0.0.5:6379 or auto (default: $RAY_ADDRESS, else start "
                             "Ray on this machine)")
    parser.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"rows per block and per actor call (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--concurrency", type=_positive, metavar="N",
                        help="scoring actors (one CPU each; default: the cluster's CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--split", choices=SPLITS, help="the aclImdb archive: score only this split")
    parser.add_argument("--model-dir", type=Path, metavar="PATH",
                        help="folder with the models (default: SENTIMENT_MODEL_DIR, else models/)")
    parser.add_argument("--stats", type=Path, metavar="PATH",
                        help="also write the run's summary as JSON here (rows, rows/s, the rows per Ray node)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    parser.add_argument("--ray-progress-bars", action="store_true", help="show Ray Data's own progress bars too")
    return parser.parse_args(argv)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings() if args.model_dir is None else Settings(model_dir=args.model_dir)
        settings = settings.model_copy(update={"model_dir": settings.model_dir.resolve()})  # the same for the actors
    except ValidationError as error:
        return _fail(f"invalid SENTIMENT_* setting: {_first_line(error)}")
    try:
        source = open_source(args.input, args.split)
        output = check_output(args.output, args.overwrite)
        if output.resolve() == args.input.resolve():
            raise OutputError(f"--output {output} is the input; choose another output")
        check_archive(source)
        scorer = BatchScorer.from_settings(settings, args.models)  # the models' checks and names, before Ray starts
    except (InputError, OutputError, ModelLoadError, ScoringError) as error:
        return _fail(getattr(error, "message", None) or str(error))

    try:
        from bulk import pipeline  # Ray is imported only once there is something to score
    except ImportError as error:
        return _fail(f"Ray Data is not installed ({error}); run `make bulk-install` "
                     "(pip install -r requirements-bulk.txt)", 1)

    # The input's size, for the progress's ETA, counted while Ray starts (the archive: a pass over it, 2-3 s).
    counting = ThreadPoolExecutor(max_workers=1, thread_name_prefix="count")
    total = counting.submit(source.count)
    counting.shutdown(wait=False)
    try:
        summary = pipeline.run(source, output, settings, scorer.names, address=args.address,
                               batch_size=args.batch_size, concurrency=args.concurrency, total=total,
                               progress=not args.no_progress, ray_progress_bars=args.ray_progress_bars)
    except KeyboardInterrupt:
        return _fail("interrupted; no output written", 130)
    except ConnectionError as error:
        return _fail(f"cannot join the Ray cluster at {args.address}: {_first_line(error)}", 1)
    except Exception as error:  # Ray wraps the failure of a task in its own types; one line, no traceback
        return _fail(f"bulk scoring failed, no output written: {type(error).__name__}: {_last_line(error)}", 1)
    print(summary.line(), file=sys.stderr, flush=True)
    if args.stats is not None:
        args.stats.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _last_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
