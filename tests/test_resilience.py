"""Faults and load against the real server: graceful SIGTERM, and a bounded load/soak run."""

import asyncio
import random
import signal
import time

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from artifacts.tokenizer import Tokenizer
from artifacts.vocabulary import load_word_index
from tests.conftest import MODEL_NAMES, MODELS_DIR, read_metadata, running_server


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_in_flight_requests_and_exits(real_test_reviews, workers):
    texts, _ = real_test_reviews
    with running_server(graceful_shutdown_seconds="20", workers=workers) as (base_url, process):

        async def scenario():
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                in_flight = [asyncio.create_task(client.post("/predict?model=conv_lstm", json={"reviews": texts}))
                             for _ in range(12)]
                await asyncio.sleep(0.3)
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                responses = await asyncio.gather(*in_flight)
                await asyncio.sleep(0.5)
                try:
                    async with httpx.AsyncClient(base_url=base_url, timeout=2) as fresh:
                        late = await fresh.post("/predict", json={"reviews": ["too late"]})
                        late_status = late.status_code
                except httpx.TransportError:
                    late_status = "refused"
                return responses, late_status, signalled

        responses, late_status, signalled = asyncio.run(scenario())
        exit_code = process.wait(timeout=20)
        assert time.monotonic() - signalled < 20
    assert [r.status_code for r in responses] == [200] * 12
    assert all(len(r.json()["results"][0]["predictions"]) == len(texts) for r in responses)
    assert late_status in ("refused", 503)
    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown


@pytest.mark.load
def test_load_and_soak(real_test_reviews, request):
    """Concurrent clients for a bounded time: no errors, every score equal to onnxruntime run directly,
    and resident memory that stops growing."""
    seconds = request.config.getoption("--soak-seconds")
    texts, _ = real_test_reviews
    expected = {}
    for name in MODEL_NAMES:
        metadata = read_metadata(name)
        tokenizer = Tokenizer(load_word_index(MODELS_DIR / metadata["vocabulary"]["file"]),
                              metadata["num_words"], metadata["max_len"], metadata.get("tokenizer", "keras"))
        session = ort.InferenceSession(str(MODELS_DIR / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        expected[name] = session.run(None, {"tokens": tokenizer.encode_batch(texts)})[0].reshape(-1)

    with running_server() as (base_url, process):
        rng = random.Random(1)
        stats = {"requests": 0, "errors": 0, "mismatches": 0, "reviews": 0}
        memory = []

        async def client_loop(client, stop_at):
            while time.monotonic() < stop_at:
                indices = rng.sample(range(len(texts)), rng.choice([1, 1, 1, 4, 16]))
                model = rng.choice([*MODEL_NAMES, "all"])
                response = await client.post("/predict", params={"model": model},
                                             json={"reviews": [texts[i] for i in indices]})
                stats["requests"] += 1
                if response.status_code != 200:
                    stats["errors"] += 1
                    continue
                for result in response.json()["results"]:
                    served = np.array([p["score"] for p in result["predictions"]])
                    stats["reviews"] += len(served)
                    if not np.allclose(served, expected[result["model"]][indices], rtol=0, atol=1e-6):
                        stats["mismatches"] += 1

        async def sample_memory(stop_at):
            while time.monotonic() < stop_at:
                memory.append(rss_mb(process.pid))
                await asyncio.sleep(seconds / 20)

        async def scenario():
            # Idle connections expire on the client before uvicorn's 5 s keep-alive closes them on the
            # server, so a request never races a closing connection.
            limits = httpx.Limits(max_connections=32, keepalive_expiry=2)
            async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
                # onnxruntime's memory arena grows with each new batch shape it sees; show it every batch
                # size the soak can make (1 to 64 rows, the batcher's limit) first, so the soak measures
                # leaks, not warm-up.
                for name in MODEL_NAMES:
                    for size in range(1, 65):
                        response = await client.post("/predict", params={"model": name},
                                                     json={"reviews": texts[:size]})
                        assert response.status_code == 200
                # Then the same load for 3 s unmeasured: each thread's allocator arena settles.
                warm_until = time.monotonic() + 3
                await asyncio.gather(*(client_loop(client, warm_until) for _ in range(32)))
                stop_at = time.monotonic() + seconds
                await asyncio.gather(sample_memory(stop_at), *(client_loop(client, stop_at) for _ in range(32)))

        asyncio.run(scenario())

    # A leak shows as steady growth, a busy moment as a spike: compare the medians of the second and
    # the last quarter of the run.
    quarter = len(memory) // 4
    growth_second_half = float(np.median(memory[-quarter:]) - np.median(memory[quarter:2 * quarter]))
    print(f"\nsoak: {stats['requests']} requests ({stats['reviews']} reviews scored) from 32 concurrent clients "
          f"in {seconds:.0f} s, {stats['errors']} errors, {stats['mismatches']} mismatches; "
          f"RSS {memory[0]:.0f} -> {max(memory):.0f} MB peak, median {growth_second_half:+.1f} MB from the second "
          "to the last quarter")
    assert stats["requests"] > 0 and stats["errors"] == 0 and stats["mismatches"] == 0
    assert growth_second_half < 25, memory
