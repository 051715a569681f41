# Runtime image: onnxruntime + FastAPI serving the committed models. No TensorFlow, no compilers.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app

# The service and the artifacts package it reads models with; nothing of training/.
COPY artifacts/ artifacts/
COPY service/ service/
COPY models/*.onnx models/*.json models/

USER 10001
ENV SENTIMENT_HOST=0.0.0.0 \
    SENTIMENT_PORT=8000 \
    SENTIMENT_MODEL_DIR=/app/models \
    SENTIMENT_WORKERS=1 \
    SENTIMENT_ORT_INTRA_OP_THREADS=1 \
    SENTIMENT_ORT_INTER_OP_THREADS=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# uvicorn with SENTIMENT_WORKERS processes, each with SENTIMENT_ORT_*_THREADS onnxruntime threads
CMD ["python", "-m", "service"]


# Training image: `docker compose --profile train run --rm train` (data mounted at /data).
FROM python:3.11-slim AS train
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt requirements-train.txt ./
RUN pip install --no-cache-dir -r requirements-train.txt
COPY artifacts/ artifacts/
COPY training/ training/
ENV IMDB_DATA_DIR=/data
ENTRYPOINT ["python", "-m", "training"]
CMD ["--out", "/app/models"]
