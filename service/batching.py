"""Dynamic batching: concurrent requests for the same graph of the same model are gathered into one
onnxruntime call, up to `max_rows` rows or `max_delay` seconds after the first one arrived.

Each caller awaits its own future and gets back exactly its rows, in order. Inputs are validated before
they are queued, so one request's bad input never reaches a batch; if the session itself fails, every
request of that batch gets the error (a server fault, not a client one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.metrics import Metrics

RunFn = Callable[[np.ndarray], list[np.ndarray]]  # one input (B, ...) -> outputs (B, ...)


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[list[np.ndarray]]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, run: RunFn, max_rows: int, max_delay: float, metrics: Metrics, model: str, graph: str):
        self.run, self.max_rows, self.max_delay = run, max_rows, max_delay
        self.metrics, self.model, self.graph = metrics, model, graph
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        # One thread per batcher: batches of a graph run one after another (the next one gathers meanwhile),
        # and onnxruntime spreads each over its own intra-op threads.
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vae-{graph}")

    async def __call__(self, rows: np.ndarray) -> list[np.ndarray]:
        """Run the graph on `rows` (N, ...), batched with whatever else is waiting; returns its outputs."""
        if self.worker is None or self.worker.done():
            self.worker = asyncio.get_running_loop().create_task(self._serve())
        pending = _Pending(rows, asyncio.get_running_loop().create_future())
        await self.queue.put(pending)
        return await pending.future

    async def _serve(self) -> None:
        while True:
            first = await self.queue.get()
            batch, rows = [first], len(first.rows)
            deadline = first.queued_at + self.max_delay
            while rows < self.max_rows:
                try:  # whatever is already waiting joins at once (it queued while the last batch ran)
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    timeout = deadline - time.perf_counter()
                    if timeout <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), timeout)
                    except TimeoutError:
                        break
                batch.append(item)
                rows += len(item.rows)
            await self._run(batch)

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        for p in batch:
            self.metrics.queue_seconds.labels(self.model, self.graph).observe(started - p.queued_at)
        self.metrics.batch_rows.labels(self.model, self.graph).observe(sum(len(p.rows) for p in batch))
        try:
            inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            outputs = await asyncio.get_running_loop().run_in_executor(self.thread, self.run, inputs)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        start = 0
        for p in batch:
            end = start + len(p.rows)
            if not p.future.done():  # the client may have gone away
                p.future.set_result([out[start:end] for out in outputs])
            start = end

    def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.thread.shutdown(wait=False, cancel_futures=True)
