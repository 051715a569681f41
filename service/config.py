"""Service configuration: environment variables prefixed ``SENTIMENT_`` (e.g. ``SENTIMENT_MODEL_DIR``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", protected_namespaces=())

    model_dir: Path = Field(PROJECT_ROOT / "models", description="Folder with <name>.onnx + <name>.json files.")
    default_model: str | None = Field(None, description="Model used without ?model=; default: best test accuracy.")
    skip_broken_models: bool = Field(
        False, description="Start with the healthy models when some fail to load (/readyz lists the failures).")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes (python -m service).")
    ort_intra_op_threads: int = Field(1, ge=1, description="onnxruntime threads per model call.")
    ort_inter_op_threads: int = Field(1, ge=1, description="onnxruntime threads across graph nodes.")
    max_reviews: int = Field(256, ge=1, description="Most reviews in one request.")
    max_review_chars: int = Field(100_000, ge=1, description="Most characters in one review.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="Largest request body; larger gets 413.")
    request_timeout_seconds: float = Field(30.0, gt=0, description="Longest a prediction may take; then 503.")
    batch_max_size: int = Field(64, ge=1, description="Most reviews gathered into one model call.")
    batch_max_wait_ms: float = Field(
        2.0, ge=0, description="Longest the batcher keeps gathering while requests keep arriving.")
    log_reviews: bool = Field(False, description="Log review text (off: logs carry counts and timings only).")
    log_level: str = "info"
