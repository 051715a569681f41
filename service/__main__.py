"""``python -m service``: serve the models with the settings from the environment (``--help`` lists them)."""

import argparse
import os
import sys
import tempfile

from service import workers
from service.config import Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Only ``--help``: every setting is an environment variable, the same ones in Docker and Kubernetes."""
    lines = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default
        lines.append(f"  SENTIMENT_{name.upper():<36} {field.description or ''} (default: {default})")
    parser = argparse.ArgumentParser(
        prog="python -m service", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the sentiment models in SENTIMENT_MODEL_DIR over HTTP (uvicorn + onnxruntime).",
        epilog="Configured by environment variables:\n" + "\n".join(lines))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}; settings are environment variables, e.g. "
                     "SENTIMENT_PORT=8001 python -m service (see --help)")
    return args


parse_args()
settings = Settings()
with tempfile.TemporaryDirectory(prefix="sentiment-metrics-") as metrics_dir:
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker keeps its own counters; prometheus-client merges them from files in this folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    sys.exit(workers.run(settings))
