"""A small closed-loop HTTP/1.1 load generator on asyncio (keep-alive, one request in flight
per connection). It is far lighter than an HTTP client library, so on a 2-core machine it leaves
most of the CPU to the server being measured.

    python -m benchmarks.loadgen --url http://127.0.0.1:8000/predict?model=conv1d \
        --bodies bodies.json --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

import numpy as np
import uvloop


def encode_requests(url: str, bodies: list[bytes]) -> tuple[str, int, list[bytes]]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (f"POST {target} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            "Content-Type: application/json\r\nConnection: keep-alive\r\n")
    return parts.hostname, parts.port, [
        f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight; ``send`` returns the status.
    A bare protocol rather than asyncio streams: less client CPU taken from the server under test."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.expected: int | None = None  # bytes of the whole response, once its head is in
        self.closing = False  # the server said "Connection: close", or the connection is gone

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        self.buffer += data
        if self.expected is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n"):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    self.closing = True
            self.expected = end + 4 + length
        if len(self.buffer) >= self.expected:
            status = int(self.buffer[9:12])
            del self.buffer[:self.expected]
            self.expected = None
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(status)

    def connection_lost(self, error):
        self.closing = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(0)

    async def send(self, request: bytes) -> int | None:
        """The response's status; 0 when the connection broke before the answer; None, and nothing
        sent, when the connection is already closed (the caller reconnects)."""
        if self.closing:
            return None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def run(url: str, bodies: list[bytes], concurrency: int, duration: float, warmup: float) -> dict:
    host, port, requests = encode_requests(url, bodies)
    latencies: list[float] = []
    errors = sent = 0
    loop = asyncio.get_running_loop()
    cpu_started = time.process_time()
    started = time.perf_counter()
    measure_from, stop_at = started + warmup, started + warmup + duration

    async def connect() -> _Connection:
        _, protocol = await loop.create_connection(_Connection, host, port)
        return protocol

    async def connection(offset: int) -> None:
        nonlocal errors, sent
        client = await connect()
        index = offset
        try:
            while (now := time.perf_counter()) < stop_at:
                status = await client.send(requests[index % len(requests)])
                done = time.perf_counter()
                if status is None:
                    client.transport.close()
                    client = await connect()
                    continue
                index += concurrency
                sent += 1
                if now >= measure_from:
                    latencies.append(done - now)
                    errors += status != 200
                if client.closing:
                    client.transport.close()
                    client = await connect()
        finally:
            client.transport.close()

    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    cpu_seconds = time.process_time() - cpu_started
    values = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": int(errors),
        "seconds": round(elapsed, 3),
        "requests_per_s": len(latencies) / elapsed,
        "requests_with_warmup": sent,
        "client_cpu_us_per_request": cpu_seconds / max(sent, 1) * 1e6,
        "p50_ms": float(np.percentile(values, 50)) if len(values) else None,
        "p95_ms": float(np.percentile(values, 95)) if len(values) else None,
        "p99_ms": float(np.percentile(values, 99)) if len(values) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", required=True, help="JSON file: a list of request bodies (objects)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    with open(args.bodies, encoding="utf-8") as handle:
        bodies = [json.dumps(body).encode() for body in json.load(handle)]
    print(json.dumps(uvloop.run(run(args.url, bodies, args.concurrency, args.duration, args.warmup))))


if __name__ == "__main__":
    main()
