"""``python -m service``: serve with the settings from the environment."""

import os
import sys
import tempfile

from service import workers
from service.config import Settings

settings = Settings()
with tempfile.TemporaryDirectory(prefix="sentiment-metrics-") as metrics_dir:
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker keeps its own counters; prometheus-client merges them from files in this folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    sys.exit(workers.run(settings))
