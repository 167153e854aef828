"""One ONNX graph of a served model: its onnxruntime session, named by the manifest, run two ways.

`graph.run(rows)` blocks the calling thread: the log-likelihood estimator runs it in a worker thread.
`await graph(rows)` is what requests use: with batching on, concurrent calls for the same graph share one
onnxruntime call (service/batching.py); with it off, the call runs in a worker thread. Either way the
event loop never runs inference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from service.batching import Batcher
from service.manifest import GraphSpec
from service.metrics import Metrics
from service.offload import Workers


@dataclass(frozen=True)
class BatchPolicy:
    enabled: bool
    max_rows: int
    max_delay_s: float
    max_queued_rows: int = 4096  # past it a request is refused (503) instead of queued
    retry_after_s: int = 1


class Graph:
    def __init__(self, session: ort.InferenceSession, spec: GraphSpec, model: str, role: str, metrics: Metrics,
                 policy: BatchPolicy, workers: Workers):
        self.session, self.spec, self.role = session, spec, role
        self.input = next(iter(spec.inputs))  # every graph of a model folder has one input
        self.outputs = list(spec.outputs)
        self.seconds = metrics.inference.labels(model, role)
        self.workers = workers
        self.batcher = (Batcher(self.run, policy.max_rows, policy.max_delay_s, metrics, model, role,
                                policy.max_queued_rows, policy.retry_after_s) if policy.enabled else None)

    def run(self, rows: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs for rows (B, ...), in the manifest's order; blocks (onnxruntime releases the GIL)."""
        started = time.perf_counter()
        outputs = self.session.run(self.outputs, {self.input: np.ascontiguousarray(rows, dtype=np.float32)})
        self.seconds.observe(time.perf_counter() - started)
        return outputs

    async def __call__(self, rows: np.ndarray) -> list[np.ndarray]:
        """The same, batched with concurrent calls (or on a worker thread when batching is off)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)  # batches concatenate rows of one dtype
        if self.batcher is None:
            return await self.workers.run(self.run, rows)
        return await self.batcher(rows)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
