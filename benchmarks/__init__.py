"""Throughput and latency benchmarks: `python -m benchmarks` (see README)."""
