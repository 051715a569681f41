import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

import pytest

from training.data import load_imdb
from artifacts.vocabulary import load_word_index

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("IMDB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DATASET_ARCHIVE = SHARED_DATA / "aclImdb_v1_labeled.tar.gz"
WORD_INDEX = SHARED_DATA / "imdb_word_index.json"
MODELS_DIR = REPO_ROOT / "models"
MODEL_NAMES = sorted(path.stem for path in MODELS_DIR.glob("*.onnx"))  # the committed models, as served


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests need ../shared/data (or IMDB_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def imdb_word_index() -> dict[str, int]:
    return load_word_index(_require(WORD_INDEX))


@pytest.fixture(scope="session")
def imdb_dataset():
    """The real dataset, read once per test session (about three seconds)."""
    return load_imdb(_require(DATASET_ARCHIVE))


@pytest.fixture(scope="session")
def real_test_reviews(imdb_dataset) -> tuple[list[str], list[int]]:
    """200 reviews drawn at random (fixed seed) from the 25,000 test reviews."""
    test = imdb_dataset["test"]
    chosen = random.Random(7).sample(range(len(test)), 200)
    return [test.texts[i] for i in chosen], [test.labels[i] for i in chosen]


def write_review_tarball(path: Path, reviews: dict[str, str], prefix: str = "aclImdb") -> Path:
    """A tarball in the dataset's layout; ``reviews`` maps 'train/pos/0_9.txt' to text."""
    with tarfile.open(path, "w:gz") as archive:
        for name, text in {"README": "test", **reviews}.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory, imdb_dataset) -> Path:
    """A small real-data tarball: 200 train and 200 test reviews, balanced."""
    reviews = {}
    for split in ("train", "test"):
        data = imdb_dataset[split]
        picked = {0: 0, 1: 0}
        for index, (text, label) in enumerate(zip(data.texts, data.labels)):
            if picked[label] < 100:
                picked[label] += 1
                reviews[f"{split}/{'pos' if label else 'neg'}/{index}_{8 if label else 2}.txt"] = text
    return write_review_tarball(tmp_path_factory.mktemp("data") / "sample.tar.gz", reviews)


def read_metadata(name: str) -> dict:
    return json.loads((MODELS_DIR / f"{name}.json").read_text())


def pytest_addoption(parser):
    parser.addoption("--soak-seconds", type=float, default=8.0,
                     help="how long the load/soak test drives the server (default: 8 s; CI uses the default)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(**settings: str):
    """`python -m service` on a free loopback port, ready; yields (base URL, process)."""
    port = free_port()
    env = {**os.environ, "SENTIMENT_HOST": "127.0.0.1", "SENTIMENT_PORT": str(port),
           "SENTIMENT_MODEL_DIR": str(MODELS_DIR), **{f"SENTIMENT_{k.upper()}": v for k, v in settings.items()}}
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would stall the server
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=REPO_ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"server exited: {log.read()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not become ready within 60 s"
            time.sleep(0.1)
        try:
            yield base_url, process
        except BaseException:
            log.seek(0)
            print("server log (last 40 lines):\n" + "".join(log.readlines()[-40:]))
            raise
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        log.close()
