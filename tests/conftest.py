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

from artifacts.vocabulary import load_word_index
from training.data import SPLITS, Split

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
MODEL_NAMES = sorted(path.stem for path in MODELS_DIR.glob("*.onnx"))  # the committed models, as served
# Real data committed with the tests, so they need nothing beside the checkout (see tests/data/README.md).
SAMPLE_REVIEWS = REPO_ROOT / "tests" / "data" / "imdb_sample.jsonl"  # 439 IMDB reviews, both splits
KERAS_WORD_INDEX = MODELS_DIR / "vocab_20000.json"  # ranks 1..19,996 of the Keras IMDB word index, unchanged


@pytest.fixture(scope="session")
def imdb_word_index() -> dict[str, int]:
    """The Keras IMDB word index (word -> frequency rank), its 19,996 most frequent words."""
    return load_word_index(KERAS_WORD_INDEX)


def read_sample_reviews() -> list[dict]:
    """The committed sample, one dict per review: split, id, rating, label, text."""
    return [json.loads(line) for line in SAMPLE_REVIEWS.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def imdb_dataset() -> dict[str, Split]:
    """The committed sample of the real dataset, as ``training.data.load_imdb`` returns a dataset: both
    splits, ordered by label folder (neg, pos) and review id."""
    reviews = sorted(read_sample_reviews(), key=lambda review: (review["label"], review["id"]))
    splits = {name: Split([], [], []) for name in SPLITS}
    for review in reviews:
        split = splits[review["split"]]
        split.texts.append(review["text"])
        split.labels.append(review["label"])
        split.ratings.append(review["rating"])
    return splits


@pytest.fixture(scope="session")
def real_test_reviews(imdb_dataset) -> tuple[list[str], list[int]]:
    """200 reviews drawn at random (fixed seed) from the sample's test reviews."""
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
def sample_archive(tmp_path_factory) -> Path:
    """A small real-data tarball in the dataset's layout: 200 train and 200 test reviews, balanced (all the
    sample's train reviews, and the first 100 test reviews of each label)."""
    reviews, per_label = {}, {}
    for review in sorted(read_sample_reviews(), key=lambda review: (review["split"], review["label"], review["id"])):
        key = (review["split"], review["label"])
        per_label[key] = per_label.get(key, 0) + 1
        if per_label[key] <= 100:
            folder = "pos" if review["label"] else "neg"
            reviews[f"{review['split']}/{folder}/{review['id']}_{review['rating']}.txt"] = review["text"]
    assert len(reviews) == 400, f"{SAMPLE_REVIEWS} needs 100 reviews of each label in each split"
    return write_review_tarball(tmp_path_factory.mktemp("data") / "sample.tar.gz", reviews)


def wait_until_ready(client) -> None:
    """Until the app behind a TestClient answers /readyz with 200 (its models warmed up), at most 5 s."""
    for _ in range(500):
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.01)
    raise AssertionError("service did not become ready")


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
