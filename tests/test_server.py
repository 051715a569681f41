"""The real server: `python -m service` under uvicorn on a free loopback port, spoken to over HTTP."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.procfs import TCP_ESTABLISHED, listening_sockets, tcp_sockets, wait_for_workers
from tests.conftest import MODEL_NAMES, MODELS_DIR, REPO_ROOT, free_port, read_sample_reviews, running_server


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def test_predicts_over_http(server):
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        body = client.post("/predict", params={"model": "all"},
                           json={"reviews": ["One of the best films ever made, wonderful acting.",
                                             "The worst movie I have ever seen, a total waste of time."]}).json()
    assert [result["model"] for result in body["results"]] == MODEL_NAMES
    for result in body["results"]:
        assert [p["label"] for p in result["predictions"]] == ["positive", "negative"]


def test_errors_over_http(server):
    base_url, _ = server
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post("/predict", content=b"nope", headers={"content-type": "application/json"}).status_code == 422
        assert client.post("/predict", content=b"x" * (5 * 1024 * 1024),
                           headers={"content-type": "application/json"}).status_code == 413
        assert client.get("/healthz").json() == {"status": "ok"}
        assert "sentiment_http_requests_total" in client.get("/metrics").text


def test_concurrent_clients_get_their_own_answers(server):
    import asyncio

    base_url, _ = server
    reviews = [review["text"] for review in read_sample_reviews()[:64]]  # real reviews: each scores apart

    async def scenario():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            responses = await asyncio.gather(*(client.post("/predict?model=conv1d", json={"reviews": [r]})
                                               for r in reviews))
            batch = await client.post("/predict?model=conv1d", json={"reviews": reviews})
        return responses, batch

    responses, batch = asyncio.run(scenario())
    singles = [r.json()["results"][0]["predictions"][0] for r in responses]
    together = batch.json()["results"][0]["predictions"]
    # Everything but the score exactly; the score to 1e-12: onnxruntime's float64 sigmoid rounds the last bit by the
    # batch's length (6 of 512 test reviews moved by 1.1e-16 between batches of 1 and 16, with identical logits),
    # and the batcher groups the single requests as they come. A mix-up of two reviews moves a score by far more.
    assert [{**p, "score": None} for p in singles] == [{**p, "score": None} for p in together]
    assert [p["score"] for p in singles] == pytest.approx([p["score"] for p in together], abs=1e-12, rel=0)
    assert len({round(p["score"], 9) for p in together}) > 48  # the reviews score apart: a mix-up would show



def test_several_workers_serve_and_share_metrics():
    with running_server(workers="2") as (base_url, _):
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for _ in range(20):  # new connections, spread over both workers by the kernel
                with httpx.Client(base_url=base_url, timeout=10) as fresh:
                    review = "One of the best films ever made, wonderful acting."
                    body = fresh.post("/predict?model=conv1d", json={"reviews": [review]}).json()
                    assert body["results"][0]["predictions"][0]["label"] == "positive"
            metrics = client.get("/metrics").text
    line = next(line for line in metrics.splitlines()
                if line.startswith('sentiment_reviews_scored_total{model="conv1d"}'))
    assert float(line.rsplit(" ", 1)[1]) == 20.0  # counted across both processes


def worker_pids(supervisor_pid: int) -> list[int]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    # multiprocessing's spawn start method also runs a resource tracker: workers are the ones that listen
    return [int(pid) for pid in children if "multiprocessing.resource_tracker" not in
            Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]


def established_connections(pid: int, port: int) -> int:
    """TCP connections to ``port`` that process ``pid`` holds open (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return sum(state == TCP_ESTABLISHED and inode in inodes for state, inode in tcp_sockets(port))


@contextlib.contextmanager
def two_workers(**settings: str):
    """`running_server` with 2 workers, once both serve (killed before serving would be a start-up
    failure); yields (base URL, port, supervisor process)."""
    with running_server(workers="2", **settings) as (base_url, process):
        port = int(base_url.rsplit(":", 1)[1])
        wait_for_workers(port, 2)
        yield base_url, port, process


def run_service_to_exit(**env: str) -> subprocess.CompletedProcess:
    """`python -m service` with 2 workers and these SENTIMENT_* settings, expected to stop by itself."""
    return subprocess.run([sys.executable, "-m", "service"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "SENTIMENT_WORKERS": "2",
                                           **{f"SENTIMENT_{key.upper()}": value for key, value in env.items()}})


def test_a_burst_of_connections_is_spread_over_the_workers():
    # With uvicorn's shared listening socket, one worker would accept the whole burst.
    with two_workers() as (base_url, port, process):
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        try:
            deadline = time.monotonic() + 10
            while True:
                per_worker = [established_connections(pid, port) for pid in worker_pids(process.pid)]
                if sum(per_worker) == 32 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            for connection in connections:
                connection.close()
    assert sum(per_worker) == 32 and len(per_worker) == 2
    assert min(per_worker) >= 4, per_worker  # each worker gets a share (all-or-nothing odds: 1 in 2**31)


def test_a_crashed_worker_is_replaced():
    with two_workers() as (base_url, _, process):
        first, second = worker_pids(process.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            pids = worker_pids(process.pid)
            if len(pids) == 2 and first not in pids:
                with httpx.Client(base_url=base_url, timeout=5) as client:
                    if client.get("/readyz").status_code == 200:
                        break
            assert time.monotonic() < deadline, f"worker not replaced: {pids}"
            time.sleep(0.2)
        assert second in pids and process.poll() is None
        for _ in range(10):  # new connections reach both workers and are answered
            with httpx.Client(base_url=base_url, timeout=5) as client:
                assert client.post("/predict", json={"reviews": ["a wonderful film"]}).status_code == 200


@pytest.mark.parametrize("setting, value, reason", [
    ("MODEL_DIR", "missing-models", "missing-models"),  # the lifespan fails: uvicorn exits with 3
    ("API_KEYS_FILE", "empty-keys", "holds no API key"),  # the app fails at import: the worker exits with 1
])
def test_a_worker_that_cannot_start_stops_the_service(tmp_path, setting, value, reason):
    (tmp_path / "empty-keys").write_text("")
    started = time.monotonic()
    result = run_service_to_exit(port=str(free_port()), **{setting: str(tmp_path / value)})
    assert result.returncode == 3 and time.monotonic() - started < 30  # a clear stop, not a restart loop
    assert reason in result.stderr and "could not start" in result.stderr and "stopping the service" in result.stderr
    assert result.stderr.count("started (pid") == 2  # no worker was restarted


def test_a_taken_port_is_a_clear_start_up_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_service_to_exit(port=str(port))
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_a_worker_that_cannot_restart_is_retried_while_the_other_serves(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    with two_workers(model_dir=str(models)) as (base_url, port, process):  # only the restart meets the gap
        first, second = worker_pids(process.pid)
        models.rename(tmp_path / "away")  # a restarted worker now fails to load its models
        os.kill(first, signal.SIGKILL)
        time.sleep(4)  # the restart fails at once, then is retried after 1 s, then 3 s
        assert process.poll() is None and second in worker_pids(process.pid)
        with httpx.Client(base_url=base_url, timeout=5) as client:
            assert client.post("/predict", json={"reviews": ["a wonderful film"]}).status_code == 200
        (tmp_path / "away").rename(models)
        deadline = time.monotonic() + 60
        while len(worker_pids(process.pid)) < 2 or listening_sockets(port) < 2:
            assert time.monotonic() < deadline, "the worker was not restarted once its models were back"
            time.sleep(0.2)
