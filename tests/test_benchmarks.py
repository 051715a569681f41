"""The benchmark against the real server: the load generator counts answers and errors right, and the
(a)/(b) pairs put each service rate over the limit measured just before it; every committed model is
measured with the tokenizer its metadata names; /proc shows the sockets a port listens on."""

import contextlib
import json
import socket

import numpy as np
import pytest
import uvloop

from artifacts.metadata import read_metadata
from benchmarks import loadgen, tokenizing
from benchmarks.measure import PAIRED_ROUNDS, model_latencies, paired_ratios, sampled_test_reviews
from benchmarks.procfs import TCP_ESTABLISHED, listening_sockets, tcp_sockets
from tests.conftest import MODEL_NAMES, MODELS_DIR, REPO_ROOT, running_server
from training.data import DataError


def test_loadgen_counts_requests_latencies_and_errors(tmp_path):
    good = [json.dumps({"reviews": [f"a wonderful film, number {i}"]}).encode() for i in range(8)]
    bad = [b'{"reviews": []}']  # a 422 from the service: counted as an error
    with running_server() as (base_url, _):
        ok = uvloop.run(loadgen.run(f"{base_url}/predict?model=conv1d", good, concurrency=4, duration=1.0,
                                    warmup=0.2))
        failing = uvloop.run(loadgen.run(f"{base_url}/predict", bad, concurrency=2, duration=0.5, warmup=0.0))
    assert ok["requests"] > 20 and ok["errors"] == 0 and ok["concurrency"] == 4
    assert 0 < ok["p50_ms"] <= ok["p95_ms"] <= ok["p99_ms"]
    assert failing["requests"] > 0 and failing["errors"] == failing["requests"]


def test_loadgen_reconnects_when_the_server_closes_connections():
    """A server that answers once per connection and then closes it (\"Connection: close\")."""
    import asyncio

    async def scenario():
        async def handle(reader, writer):
            # At the end the load generator closes connections it has opened but not used.
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
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


def test_model_latencies_measure_every_committed_model_with_its_metadata(imdb_dataset):
    latencies = model_latencies(MODELS_DIR, imdb_dataset["test"].texts[:64])
    assert sorted(latencies) == MODEL_NAMES
    for name, row in latencies.items():
        assert row["test_accuracy"] == read_metadata(MODELS_DIR / f"{name}.json").test_accuracy
        assert row["p50_ms_one_review"] > 0 and all(rate > 0 for rate in row["reviews_per_s_by_batch"].values())


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_proc_shows_the_sockets_listening_on_a_port_and_their_connections(family):
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as listener:
        try:
            listener.bind((host, 0))
        except OSError as error:  # a machine without IPv6 on loopback
            pytest.skip(f"cannot bind {host}: {error}")
        port = listener.getsockname()[1]
        assert listening_sockets(port) == 0
        listener.listen()
        assert listening_sockets(port) == 1
        with socket.create_connection((host, port)):
            accepted, _ = listener.accept()
            with accepted:
                states = [state for state, _ in tcp_sockets(port)]
                assert states.count(TCP_ESTABLISHED) == 1  # the accepted side; the client's local port differs


def test_the_tokenizing_benchmark_times_each_models_tokenizer_in_both_checkouts(imdb_dataset):
    results = tokenizing.compare(REPO_ROOT, REPO_ROOT, ["robust_bag", "conv1d"], imdb_dataset["test"].texts[:20],
                                 rounds=2)
    assert sorted(results) == ["conv1d", "robust_bag"]
    for row in results.values():
        assert row["this_us"] > 0 and row["other_us"] > 0 and row["speedup"] > 0


def test_the_tokenizing_benchmark_refuses_a_folder_that_is_not_a_checkout(tmp_path, capsys):
    assert tokenizing.main(["--against", str(tmp_path)]) == 2
    assert "not a checkout of this project" in capsys.readouterr().err


def test_the_tokenizing_benchmark_names_a_model_the_other_checkout_cannot_time(imdb_dataset):
    with pytest.raises(RuntimeError, match="timing the tokenizers in"):
        tokenizing.compare(REPO_ROOT, REPO_ROOT, ["no_such_model"], imdb_dataset["test"].texts[:2], rounds=1)


def test_every_benchmark_draws_the_same_test_reviews_and_names_data_that_holds_too_few(sample_archive, imdb_dataset):
    drawn = sampled_test_reviews(10, sample_archive)
    assert drawn == sampled_test_reviews(10, sample_archive) and set(drawn) <= set(imdb_dataset["test"].texts)
    with pytest.raises(DataError, match="test reviews; 100000 are needed"):
        sampled_test_reviews(100_000, sample_archive)
