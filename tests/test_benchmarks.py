"""The benchmark against the real server: the load generator counts answers and errors right, and the
(a)/(b) pairs put each service rate over the limit measured just before it."""

import json

import numpy as np
import uvloop

from benchmarks import loadgen
from benchmarks.__main__ import PAIRED_ROUNDS, paired_ratios
from tests.conftest import MODELS_DIR, running_server


def test_loadgen_counts_requests_latencies_and_errors(tmp_path):
    good = [json.dumps({"reviews": [f"a wonderful film, number {i}"]}).encode() for i in range(8)]
    bad = [b'{"reviews": []}']  # a 422 from the service: counted as an error
    with running_server() as (base_url, _):
        ok = uvloop.run(loadgen.run(f"{base_url}/predict?model=conv1d", good, concurrency=4, duration=1.0,
                                            warmup=0.2))
        failing = uvloop.run(loadgen.run(f"{base_url}/predict", bad, concurrency=2, duration=0.5,
                                                 warmup=0.0))
    assert ok["requests"] > 20 and ok["errors"] == 0 and ok["concurrency"] == 4
    assert 0 < ok["p50_ms"] <= ok["p95_ms"] <= ok["p99_ms"]
    assert failing["requests"] > 0 and failing["errors"] == failing["requests"]


def test_loadgen_reconnects_when_the_server_closes_connections():
    """A server that answers once per connection and then closes it (\"Connection: close\")."""
    import asyncio

    async def scenario():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await loadgen.run(f"http://127.0.0.1:{port}/x", [b"{}"], concurrency=2, duration=0.5, warmup=0)

    result = uvloop.run(scenario())
    assert result["requests"] > 10 and result["errors"] == 0


def test_paired_ratios_put_each_service_rate_over_the_limit_measured_just_before(tmp_path):
    bodies = tmp_path / "bodies.json"
    bodies.write_text(json.dumps([{"reviews": [f"a wonderful film, number {i}"]} for i in range(8)]))
    tokens = np.random.default_rng(0).integers(0, 10_000, (64, 500), dtype=np.int32)
    with running_server() as (base_url, process):
        pairs = paired_ratios(MODELS_DIR / "conv1d.onnx", tokens, threads=1, batch_size=8,
                              url=f"{base_url}/predict?model=conv1d", bodies=bodies, duration=0.5,
                              server_pid=process.pid)
    assert len(pairs) == PAIRED_ROUNDS
    for pair in pairs:
        assert pair["limit"] > 0 and pair["service"] > 0 and pair["errors"] == 0
        assert pair["ratio"] == pair["service"] / pair["limit"]
