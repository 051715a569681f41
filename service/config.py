"""Service configuration: environment variables prefixed ``SENTIMENT_`` (e.g. ``SENTIMENT_MODEL_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", protected_namespaces=())

    model_dir: Path = Field(PROJECT_ROOT / "models", description="Folder with <name>.onnx + <name>.json files.")
    default_model: str | None = Field(
        None, description="Model used without ?model=; default: the best robustness score (models/REPORT.md).")
    skip_broken_models: bool = Field(
        False, description="Start with the healthy models when some fail to load (/readyz lists the failures).")
    admin_reload: bool = Field(
        True, description="Serve POST /admin/reload, which re-reads model_dir without a restart (API keys apply); "
                          "false answers it 404. SIGHUP reloads either way.")
    reload_poll_seconds: float = Field(
        0.0, ge=0, description="Check model_dir for changed files this often and reload once they have settled "
                               "(within two checks); 0: off.")
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in the Docker image).")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    workers: int = Field(1, ge=1, description="uvicorn worker processes (python -m service).")
    ort_intra_op_threads: int = Field(1, ge=1, description="onnxruntime threads per model call.")
    ort_inter_op_threads: int = Field(1, ge=1, description="onnxruntime threads across graph nodes.")
    max_reviews: int = Field(256, ge=1, description="Most reviews in one request.")
    max_review_chars: int = Field(100_000, ge=1, description="Most characters in one review.")
    explain_max_reviews: int = Field(
        16, ge=1, description="Most reviews in one /explain request (each costs about as much as scoring one "
                              "review per word it has).")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1, description="Largest request body; larger gets 413.")
    request_timeout_seconds: float = Field(30.0, gt=0, description="Longest a prediction may take; then 503.")
    batch_max_size: int = Field(
        16, ge=1, description="Most reviews gathered into one model call (the convolutional models get slower per "
                              "review in larger batches on a 2-core machine).")
    batch_max_sizes: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description='Per-model overrides of batch_max_size, as JSON: {"conv_lstm_tuned": 64}.')
    batch_max_wait_ms: float = Field(
        2.0, ge=0, description="Longest the batcher keeps gathering while requests keep arriving.")
    graceful_shutdown_seconds: float = Field(
        20.0, gt=0, description="On SIGTERM, how long in-flight requests may take to finish.")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated API keys; when set, requests need X-API-Key.")
    api_keys_file: Path | None = Field(None, description="File with one API key per line (e.g. a mounted secret).")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; none by default.")
    fast_path: bool = Field(
        True, description="Serve POST /predict past FastAPI's per-request layers (service/fast_path.py); false "
                          "sends it through FastAPI's router like every other route.")
    opentelemetry: bool = Field(
        False, description="FastAPI's native OpenTelemetry traces, metrics and logs, sent to the globally "
                           "configured providers (costs CPU on every request).")
    access_log: bool = Field(True, description="One JSON line per request on stdout (flushed within 0.2 s).")
    log_reviews: bool = Field(False, description="Log review text (off: logs carry counts and timings only).")
    log_level: str = Field("info", description="Level of the service's logs on stderr (debug, info, warning, error).")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def split_commas(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def max_batch_size(self, model: str) -> int:
        return self.batch_max_sizes.get(model, self.batch_max_size)

    def accepted_api_keys(self) -> list[str]:
        """The keys from SENTIMENT_API_KEYS and SENTIMENT_API_KEYS_FILE; empty means no authentication."""
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise ValueError(f"cannot read SENTIMENT_API_KEYS_FILE {self.api_keys_file}: {error}") from None
            from_file = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
            if not from_file:  # an unpopulated secret must not silently turn authentication off
                raise ValueError(f"SENTIMENT_API_KEYS_FILE {self.api_keys_file} holds no API key")
            keys += from_file
        return keys
