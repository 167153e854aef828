"""Dynamic batching: concurrent requests for the same graph of the same model are gathered into one
onnxruntime call, up to `max_rows` rows or `max_delay` seconds after the first one arrived.

Each caller awaits its own future and gets back exactly its rows, in order. Inputs are validated before
they are queued, so one request's bad input never reaches a batch; if the session itself fails, every
request of that batch gets the error (a server fault, not a client one).

Bounded: at most `max_queued_rows` rows wait; a request that would go past it is refused at once (Overloaded,
503 with Retry-After) rather than queued behind seconds of work. A request cancelled while it waits (its
client went away) is dropped from the queue when the next batch is cut, so its rows are never run. After
`close()` (its model was replaced by a reload) the batches already queued still run, and calls that arrive
later run unbatched on a thread of their own: requests that hold the old model finish on it.

How, and why this way: requests wait in a list on the event loop. A batch is cut by a callback that the
loop runs after the requests that arrived with the first one (so they join it), and goes to the
batcher's own thread through a C queue; the thread runs it and hands every request its rows in one
`call_soon_threadsafe`. While a batch runs, the next one gathers; when it ends, the waiting requests go at
once (or when the first of them has waited max_delay). The asyncio queue, gathering task and executor hop
per batch that this replaces took a large share of the loop's time under load; gathering on the thread
instead made batches smaller (the thread woke at the first request of every burst). See docs/performance.md.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.errors import Overloaded
from service.metrics import Metrics

RunFn = Callable[[np.ndarray], list[np.ndarray]]  # one input (B, ...) -> outputs (B, ...)


@dataclass(eq=False)
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[list[np.ndarray]]
    queued_at: float = field(default_factory=time.perf_counter)


Batch = list[_Pending]


class Batcher:
    def __init__(self, run: RunFn, max_rows: int, max_delay: float, metrics: Metrics, model: str, graph: str,
                 max_queued_rows: int = 4096, retry_after_s: int = 1):
        self.run, self.max_rows, self.max_delay = run, max_rows, max_delay
        self.max_queued_rows, self.retry_after = max_queued_rows, str(retry_after_s)
        self.waiting: list[_Pending] = []  # on the event loop, in arrival order
        self.waiting_rows = 0
        self.running = False  # a batch is on the thread
        self.closed = False  # close() was called: the thread stops once the queue is empty
        self.timer: asyncio.Handle | None = None  # the scheduled cut of the next batch
        self.jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, Batch] | None] = queue.SimpleQueue()
        # One thread per batcher: batches of a graph run one after another, and onnxruntime spreads each
        # over its own intra-op threads. Started by the first call.
        self.thread: threading.Thread | None = None
        self.queue_seconds = metrics.queue_seconds.labels(model, graph)
        self.batch_rows = metrics.batch_rows.labels(model, graph)
        # read when /metrics is scraped: no work per request
        metrics.sample(metrics.queued_rows.labels(model, graph), lambda: self.waiting_rows)
        self.queue_full = metrics.rejected.labels("queue_full")
        self.name, self.model = f"vae-{graph}", model

    async def __call__(self, rows: np.ndarray) -> list[np.ndarray]:
        """Run the graph on `rows` (N, ...), batched with whatever else is waiting; returns its outputs."""
        loop = asyncio.get_running_loop()
        if self.closed and not (self.running or self.waiting):  # the thread has stopped
            return await loop.run_in_executor(None, self.run, rows)
        if self.waiting and self.waiting_rows + len(rows) > self.max_queued_rows:  # a lone request always queues
            self.queue_full.inc()
            raise Overloaded(None, f"model {self.model!r} is busy: {self.waiting_rows} rows wait for its "
                             f"{self.name[4:]}; try again later", self.max_queued_rows,
                             headers={"Retry-After": self.retry_after})
        pending = _Pending(rows, loop.create_future())
        self.waiting.append(pending)
        self.waiting_rows += len(rows)
        if not self.running:
            self._schedule(loop)
        return await pending.future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cut the next batch after the requests that arrive with this one, or once its first request has
        waited max_delay; at once when it is full."""
        wait = self.waiting[0].queued_at + self.max_delay - time.perf_counter()
        if self.waiting_rows >= self.max_rows or wait <= 0:
            if isinstance(self.timer, asyncio.TimerHandle):  # full before its time: go now
                self.timer.cancel()
                self.timer = None
            if self.timer is None:
                self.timer = loop.call_soon(self._dispatch, loop)
        elif self.timer is None:
            self.timer = loop.call_later(wait, self._dispatch, loop)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        if self.running or not self.waiting:
            return
        batch, rows = [], 0
        while self.waiting and rows < self.max_rows:  # a batch closes at the request that reaches the limit
            pending = self.waiting.pop(0)
            self.waiting_rows -= len(pending.rows)
            if not pending.future.done():  # done: cancelled while it waited (its client went away)
                batch.append(pending)
                rows += len(pending.rows)
        if not batch:
            self._stop_when_idle()
            return
        self.running = True
        if self.thread is None:
            self.thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self.thread.start()
        self.jobs.put((loop, batch))

    def _serve(self) -> None:
        """The batch thread: run each batch and hand the outputs back to the loop, until close()."""
        while (job := self.jobs.get()) is not None:
            loop, batch = job
            outputs = self._run(batch)
            try:
                loop.call_soon_threadsafe(self._done, loop, batch, outputs)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _run(self, batch: Batch) -> list[np.ndarray] | Exception:
        """The batch's outputs, or the exception that stopped them: the thread never dies with a batch
        unanswered (the loop would wait for it forever)."""
        started = time.perf_counter()
        try:
            for p in batch:
                self.queue_seconds.observe(started - p.queued_at)
            inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            self.batch_rows.observe(len(inputs))
            return self.run(inputs)
        except Exception as exc:  # noqa: BLE001 - handed to every request of the batch
            return exc

    def _done(self, loop: asyncio.AbstractEventLoop, batch: Batch, outputs: list[np.ndarray] | Exception) -> None:
        """On the loop: each request gets its rows of the outputs (or the error); the next batch goes."""
        self.running = False
        start = 0
        for p in batch:
            end = start + len(p.rows)
            if not p.future.done():  # done: the client went away and the request was cancelled
                if isinstance(outputs, Exception):
                    p.future.set_exception(outputs)
                else:
                    p.future.set_result([out[start:end] for out in outputs])
            start = end
        if self.waiting:
            self._schedule(loop)
        else:
            self._stop_when_idle()

    def close(self) -> None:
        """Stop the thread once the queued batches have run (at once when idle). On the event loop."""
        self.closed = True
        self._stop_when_idle()

    def _stop_when_idle(self) -> None:
        if self.closed and not self.running and not self.waiting and self.thread is not None:
            self.jobs.put(None)
            self.thread = None
