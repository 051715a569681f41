"""The benchmark's load generator against the real server: it counts answers and errors right."""

import json

import uvloop

from benchmarks import loadgen
from tests.conftest import running_server


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
