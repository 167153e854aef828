"""Admission of /loglik work, per model: a bounded number of importance-sample rows admitted, a bounded
number of estimates computed at once.

An estimate's cost is its rows, k x images (one decoder row and one log-weight each), up to max_k x max_images
for one request. Without a bound, many clients of a large k queue behind each other (each request waits for
all the rows admitted before it) and every running estimate holds a chunk of decoder outputs in memory. So:
  - a request is admitted while the rows admitted (running or waiting) stay within `max_rows`; past that it
    is refused at once (Overloaded: 503 with Retry-After). A request alone is always admitted, so the
    largest valid request is never refused for its size;
  - at most `concurrency` estimates run at once (each on a worker thread, holding one chunk of
    `VAE_LOGLIK_BATCH_ROWS` decoder rows), which bounds resident memory; the admitted others wait in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.errors import Overloaded
from service.metrics import Metrics


class WorkGate:
    def __init__(self, model: str, max_rows: int, concurrency: int, retry_after_s: int, metrics: Metrics):
        self.model, self.max_rows, self.retry_after = model, max_rows, str(retry_after_s)
        self.rows = 0  # admitted, running or waiting
        self.slots = asyncio.Semaphore(concurrency)
        self.gauge = metrics.loglik_rows.labels(model)
        self.refused = metrics.rejected.labels("loglik_busy")

    @asynccontextmanager
    async def admit(self, rows: int) -> AsyncIterator[None]:
        """Hold `rows` of the budget and one running slot for the body of the `async with`."""
        if self.rows and self.rows + rows > self.max_rows:
            self.refused.inc()
            raise Overloaded(None, f"model {self.model!r} is busy: {self.rows} importance-sample rows of /loglik "
                             "are admitted; try again later", self.max_rows, headers={"Retry-After": self.retry_after})
        self.rows += rows
        self.gauge.set(self.rows)
        try:
            async with self.slots:
                yield
        finally:
            self.rows -= rows
            self.gauge.set(self.rows)
