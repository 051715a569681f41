"""Behaviour of the dynamic batcher with a fake model (no timing targets asserted, only behaviour)."""

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import Batcher, BatcherClosedError


class RecordingModel:
    """Scores each row with its first value; records every batch it was called with."""

    def __init__(self, delay: float = 0.0, fail_when=None):
        self.batches: list[np.ndarray] = []
        self.delay, self.fail_when = delay, fail_when
        self.started = threading.Event()

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        self.started.set()
        self.batches.append(tokens.copy())
        if self.delay:
            time.sleep(self.delay)
        if self.fail_when is not None and self.fail_when(tokens):
            raise RuntimeError("model failed on this batch")
        return tokens[:, 0].astype(np.float64)


def rows(*values: int) -> np.ndarray:
    return np.array([[value, 0] for value in values], dtype=np.int32)


def run(coroutine):
    return asyncio.run(coroutine)


def test_each_request_gets_its_own_rows_in_order():
    async def scenario():
        model = RecordingModel(delay=0.01)
        batcher = Batcher(model, max_batch_size=64, max_wait=0.005)
        requests = [rows(*range(start, start + size)) for start, size in [(0, 3), (100, 1), (200, 5), (300, 2)]]
        results = await asyncio.gather(*(batcher.predict(r) for r in requests))
        await batcher.close()
        return model, requests, results

    model, requests, results = run(scenario())
    for request, scores in zip(requests, results, strict=True):
        np.testing.assert_array_equal(scores, request[:, 0])
    assert sum(len(batch) for batch in model.batches) == 11


def test_concurrent_requests_share_a_model_call():
    async def scenario():
        model = RecordingModel(delay=0.02)
        batcher = Batcher(model, max_batch_size=64, max_wait=0.005)
        first = asyncio.create_task(batcher.predict(rows(1)))
        await asyncio.sleep(0.005)  # the first batch is now running; the next ones queue up behind it
        rest = [asyncio.create_task(batcher.predict(rows(value))) for value in range(2, 12)]
        await asyncio.gather(first, *rest)
        await batcher.close()
        return model

    model = run(scenario())
    assert [len(batch) for batch in model.batches] == [1, 10]


def test_max_batch_size_is_respected_and_requests_are_not_split():
    async def scenario():
        model = RecordingModel(delay=0.02)
        batcher = Batcher(model, max_batch_size=4, max_wait=0.005)
        blocker = asyncio.create_task(batcher.predict(rows(0)))
        await asyncio.sleep(0.005)
        sizes = [3, 2, 1, 1, 4, 6]
        tasks = [asyncio.create_task(batcher.predict(rows(*([i] * size)))) for i, size in enumerate(sizes, 1)]
        results = await asyncio.gather(blocker, *tasks)
        await batcher.close()
        return model, sizes, results

    model, sizes, results = run(scenario())
    batch_sizes = [len(batch) for batch in model.batches]
    assert batch_sizes[0] == 1
    assert all(size <= 4 for size in batch_sizes[:-1])
    assert batch_sizes[-1] == 6  # a request larger than the limit runs alone, whole
    assert [len(r) for r in results[1:]] == sizes
    assert batch_sizes == [1, 3, 4, 4, 6]  # 3 | 2+1+1 | 4 | 6, first come first served


def test_a_lone_request_does_not_wait_for_max_wait():
    async def scenario():
        batcher = Batcher(RecordingModel(), max_batch_size=64, max_wait=5.0)
        await batcher.predict(rows(1))  # start the worker thread
        started = time.perf_counter()
        await batcher.predict(rows(2))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert run(scenario()) < 1.0  # far below the 5 s max_wait


def test_gathering_stops_at_max_wait_while_requests_keep_arriving():
    async def scenario():
        model = RecordingModel()
        batcher = Batcher(model, max_batch_size=10**9, max_wait=0.05)  # only max_wait can end a batch here
        give_up = time.perf_counter() + 10

        async def trickle():  # a new request at every turn of the loop, until the model has been called 3 times
            tasks = []
            while len(model.batches) < 3 and time.perf_counter() < give_up:
                tasks.append(asyncio.create_task(batcher.predict(rows(1))))
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)
            return len(tasks)

        sent = await trickle()
        await batcher.close()
        return model, sent

    # A batcher that waits for a gap in the stream would gather all of it into one batch, ended by the 10 s give-up.
    # (The stream used to last a fixed 0.5 s, which a busy test run cut into two batches, of 2,627 and 2,489 rows,
    # failing a check of three: how many cuts fit in a fixed time depends on the machine's load.)
    model, sent = run(scenario())
    assert sum(len(batch) for batch in model.batches) == sent
    assert len(model.batches) >= 3  # a continuous stream is cut into several batches by max_wait


def test_max_wait_zero_still_takes_what_is_queued():
    async def scenario():
        model = RecordingModel(delay=0.02)
        batcher = Batcher(model, max_batch_size=64, max_wait=0.0)
        first = asyncio.create_task(batcher.predict(rows(1)))
        await asyncio.sleep(0.005)
        rest = [asyncio.create_task(batcher.predict(rows(v))) for v in range(2, 6)]
        await asyncio.gather(first, *rest)
        await batcher.close()
        return model

    assert [len(batch) for batch in run(scenario()).batches] == [1, 4]


def test_a_failing_batch_fails_only_its_own_requests():
    async def scenario():
        model = RecordingModel(delay=0.02, fail_when=lambda tokens: (tokens[:, 0] == 666).any())
        batcher = Batcher(model, max_batch_size=2, max_wait=0.0)
        blocker = asyncio.create_task(batcher.predict(rows(1)))
        await asyncio.sleep(0.005)
        poisoned = asyncio.create_task(batcher.predict(rows(666, 5)))
        healthy = asyncio.create_task(batcher.predict(rows(7, 8)))
        results = await asyncio.gather(blocker, poisoned, healthy, return_exceptions=True)
        after = await batcher.predict(rows(9))
        await batcher.close()
        return results, after

    (blocker, poisoned, healthy), after = run(scenario())
    assert isinstance(poisoned, RuntimeError)
    np.testing.assert_array_equal(healthy, [7, 8])
    np.testing.assert_array_equal(blocker, [1])
    np.testing.assert_array_equal(after, [9])  # the worker survived


def test_a_cancelled_waiting_request_is_skipped():
    async def scenario():
        model = RecordingModel(delay=0.05)
        batcher = Batcher(model, max_batch_size=64, max_wait=0.0)
        blocker = asyncio.create_task(batcher.predict(rows(1)))
        await asyncio.sleep(0.01)
        doomed = asyncio.create_task(batcher.predict(rows(2)))
        kept = asyncio.create_task(batcher.predict(rows(3)))
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.gather(blocker, kept)
        await batcher.close()
        return model, doomed, kept

    model, doomed, kept = run(scenario())
    assert doomed.cancelled()
    np.testing.assert_array_equal(kept.result(), [3])
    assert [batch[:, 0].tolist() for batch in model.batches] == [[1], [3]]


def test_close_drains_the_queue_then_refuses_new_work():
    async def scenario():
        model = RecordingModel(delay=0.02)
        batcher = Batcher(model, max_batch_size=2, max_wait=0.0)
        tasks = [asyncio.create_task(batcher.predict(rows(v))) for v in range(1, 8)]
        await asyncio.sleep(0.005)
        await batcher.close()
        assert all(task.done() for task in tasks)
        with pytest.raises(BatcherClosedError):
            await batcher.predict(rows(1))
        return [task.result() for task in tasks]

    results = run(scenario())
    assert [float(r[0]) for r in results] == list(range(1, 8))


def test_batch_sizes_are_reported():
    async def scenario():
        seen = []
        batcher = Batcher(RecordingModel(), max_batch_size=8, max_wait=0.0, on_batch=seen.append)
        await batcher.predict(rows(1, 2, 3))
        await batcher.close()
        return seen

    assert run(scenario()) == [3]


def test_a_failure_around_the_model_call_fails_the_batch_instead_of_hanging():
    async def scenario():
        def broken_metrics(size):
            raise RuntimeError("metrics broke")

        batcher = Batcher(RecordingModel(), max_batch_size=8, max_wait=0.0, on_batch=broken_metrics)
        with pytest.raises(RuntimeError, match="metrics broke"):
            await asyncio.wait_for(batcher.predict(rows(1)), timeout=5)
        await batcher.close()

    run(scenario())


def test_a_wrong_number_of_scores_fails_the_batch():
    async def scenario():
        batcher = Batcher(lambda tokens: np.zeros(len(tokens) + 1), max_batch_size=8, max_wait=0.0)
        with pytest.raises(RuntimeError, match="returned 3 scores for 2 reviews"):
            await asyncio.wait_for(batcher.predict(rows(1, 2)), timeout=5)
        await batcher.close()

    run(scenario())


def test_requests_not_scored_within_the_timeout_fail_and_queued_ones_are_never_run():
    async def scenario():
        model = RecordingModel(delay=0.3)
        batcher = Batcher(model, max_batch_size=1, max_wait=0.0, timeout=0.1)
        running = asyncio.create_task(batcher.predict(rows(1)))
        await asyncio.sleep(0.02)  # the first request is in the model now; the second waits behind it
        queued = asyncio.create_task(batcher.predict(rows(2)))
        outcomes = await asyncio.gather(running, queued, return_exceptions=True)
        model.delay = 0
        await asyncio.sleep(0.3)  # the first batch finishes (its scores are dropped)
        later = await batcher.predict(rows(3))  # and the batcher goes on serving
        await batcher.close()
        return model, outcomes, later

    model, outcomes, later = run(scenario())
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes)
    assert [batch[:, 0].tolist() for batch in model.batches] == [[1], [3]]
    assert later.tolist() == [3]
