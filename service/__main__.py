"""``python -m service``: run uvicorn with the settings from the environment."""

import os
import tempfile

import uvicorn

from service.config import Settings

settings = Settings()
if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # Each worker keeps its own counters; prometheus-client merges them from files in this folder.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sentiment-metrics-")
uvicorn.run("service.app:app", host=settings.host, port=settings.port, workers=settings.workers,
            log_level=settings.log_level, access_log=False,
            timeout_graceful_shutdown=settings.graceful_shutdown_seconds)
