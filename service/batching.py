"""Dynamic batching: concurrent requests for one model share a single model call.

A request is never split. The batcher takes the first waiting request, then whatever else is already
queued, up to ``max_batch_size`` rows. It keeps gathering only while new requests keep arriving, and
for at most ``max_wait`` seconds; a lone request runs at once. While one batch runs in the worker
thread, the next requests queue up, so batches grow with load by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

_STOP = object()


def _time_out(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no new work."""


@dataclass
class _Pending:
    tokens: np.ndarray
    future: asyncio.Future = field(repr=False)


class Batcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int = 64,
                 max_wait: float = 0.002, timeout: float | None = None, on_batch: Callable[[int], None] | None = None,
                 name: str = "model"):
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.timeout = timeout
        self._on_batch = on_batch
        self._queue: asyncio.Queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batcher-{name}")
        self._worker: asyncio.Task | None = None
        self._carry: _Pending | None = None  # a request that did not fit the previous batch
        self._closed = False
        self._stopping = False  # the close() marker has been taken off the queue

    def start(self) -> None:
        if self._worker is None or self._worker.done():  # also restarts a worker that died
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def predict(self, tokens: np.ndarray) -> np.ndarray:
        """Scores for ``tokens`` (one request's rows), computed in some shared batch. Raises
        TimeoutError if they are not ready within ``timeout`` seconds (a request still queued then
        is never run)."""
        if self._closed:
            raise BatcherClosedError("the model is shutting down")
        self.start()
        loop = asyncio.get_running_loop()
        pending = _Pending(tokens, loop.create_future())
        self._queue.put_nowait(pending)
        if self.timeout is None:
            return await pending.future
        # A plain timer: a third of the CPU of asyncio.timeout(), on every request.
        timer = loop.call_later(self.timeout, _time_out, pending.future)
        try:
            return await pending.future
        finally:
            timer.cancel()

    async def close(self) -> None:
        """Stop taking work, finish everything already queued, then stop the worker."""
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(_STOP)  # wakes an idle worker; it stops once the queue is drained
            await self._worker
        self._executor.shutdown(wait=True)

    def _take_nowait(self):
        if self._carry is not None:
            pending, self._carry = self._carry, None
            return pending
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _gather(self, first: _Pending) -> list[_Pending]:
        batch, rows = [first], len(first.tokens)
        deadline = time.monotonic() + self.max_wait
        yielded = False
        while rows < self.max_batch_size:
            if yielded and time.monotonic() >= deadline:  # a stream with no gap ends its batch at max_wait too
                break
            pending = self._take_nowait()
            if pending is _STOP:
                self._stopping = True
                continue
            if pending is None:
                # Let requests that are being parsed right now join, once, then go.
                if yielded or time.monotonic() >= deadline:
                    break
                yielded = True
                await asyncio.sleep(0)
                continue
            if pending.future.done():  # cancelled while it waited
                continue
            if rows + len(pending.tokens) > self.max_batch_size:
                self._carry = pending
                break
            batch.append(pending)
            rows += len(pending.tokens)
            yielded = False
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._stopping and self._carry is None and self._queue.empty():
                return
            first = self._carry if self._carry is not None else await self._queue.get()
            self._carry = None
            if first is _STOP:
                self._stopping = True
                continue
            if first.future.done():
                continue
            batch = [first]
            try:
                batch = await self._gather(first)
                tokens = batch[0].tokens if len(batch) == 1 else np.concatenate([p.tokens for p in batch])
                if self._on_batch is not None:
                    self._on_batch(len(tokens))
                scores = await loop.run_in_executor(self._executor, self._predict, tokens)
                if len(scores) != len(tokens):
                    raise RuntimeError(f"the model returned {len(scores)} scores for {len(tokens)} reviews")
            except BaseException as error:  # fails this batch's requests only; the worker goes on
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error if isinstance(error, Exception)
                                                     else RuntimeError("the model worker was stopped"))
                if not isinstance(error, Exception):
                    raise
                continue
            offset = 0
            for pending in batch:
                count = len(pending.tokens)
                if not pending.future.done():
                    pending.future.set_result(scores[offset:offset + count])
                offset += count
