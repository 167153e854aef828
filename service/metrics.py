"""Prometheus metrics, one registry per app (so tests can run several apps in one process).

With several server processes (`python -m service --workers N`, service/workers.py) prometheus_client's
multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, set by the parent before the workers start): every process
writes its values to files there, and /metrics, whichever worker answers it, adds them up. Counters and
histograms sum over all the workers that ever ran; gauges sum over the live ones ("livesum"). Gauges that read
a value when scraped (`sampled`) cannot do that across processes, so there a thread copies them once a second.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


SAMPLE_INTERVAL_S = 1.0  # how often a worker copies its sampled gauges in multiprocess mode


def multiprocess() -> bool:
    """prometheus_client decides at import time from the same variable whether values live in files."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess()
        self.sampled: list[tuple[Any, Callable[[], float]]] = []  # multiprocess mode: (gauge child, reader)
        self.sampler: threading.Thread | None = None
        self.requests = Counter("vae_requests_total", "HTTP requests", ["endpoint", "model", "status"],
                                registry=self.registry)
        self.errors = Counter("vae_errors_total", "HTTP requests answered with 4xx or 5xx",
                              ["endpoint", "model", "status"], registry=self.registry)
        self.latency = Histogram("vae_request_latency_seconds", "request latency", ["endpoint", "model"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.inference = Histogram("vae_inference_seconds", "onnxruntime time per session run", ["model", "graph"],
                                   buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("vae_batch_rows", "rows per batched onnxruntime call", ["model", "graph"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.queue_seconds = Histogram("vae_batch_queue_seconds", "time a request waited to be batched",
                                       ["model", "graph"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.images = Counter("vae_images_processed_total", "images encoded, decoded, sampled or scored, by use "
                              "case (encode, decode, sample, log_likelihood, reconstruct, resynthesize, "
                              "interpolate) whichever protocol asked", ["use_case", "model"], registry=self.registry)
        # Protections that acted (docs/operations.md): what was refused, and why.
        self.rejected = Counter("vae_rejected_total", "requests or connections refused by a protection before any "
                                "work, by reason (header_too_large, header_timeout, body_timeout, connections, "
                                "in_progress, body_bytes, queue_full, loglik_busy, rate_limited, unauthorized, "
                                "forbidden, draining)", ["reason"], registry=self.registry)
        self.cancelled = Counter("vae_cancelled_requests_total", "requests whose client went away before the "
                                 "answer (their queued work is dropped)", ["endpoint", "model"],
                                 registry=self.registry)
        self.open_connections = Gauge("vae_open_connections", "open HTTP connections", registry=self.registry,
                                      multiprocess_mode="livesum")
        self.in_progress = Gauge("vae_requests_in_progress", "HTTP requests being answered", registry=self.registry,
                                 multiprocess_mode="livesum")
        self.queued_rows = Gauge("vae_batch_queued_rows", "rows waiting for a graph's batcher", ["model", "graph"],
                                 registry=self.registry, multiprocess_mode="livesum")
        self.loglik_rows = Gauge("vae_loglik_rows_admitted", "importance-sample rows of /loglik admitted (running "
                                 "or waiting)", ["model"], registry=self.registry,
                                 multiprocess_mode="livesum")
        self.reloads = Counter("vae_model_reloads_total", "model folder (re)loads by result (loaded, unchanged, "
                               "removed, failed)", ["result"], registry=self.registry)
        # (metric, label values) -> its child: `labels()` validates and locks on every call (several
        # times a request); the label values are few (route paths, loaded models, status codes)
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def sample(self, gauge: Any, read: Callable[[], float]) -> None:
        """`gauge` shows `read()`: called when scraped (one process), or copied once a second (multiprocess)."""
        if not self.multiprocess:
            gauge.set_function(read)
            return
        self.sampled.append((gauge, read))
        if self.sampler is None:
            self.sampler = threading.Thread(target=self.copy_sampled, name="vae-metrics", daemon=True)
            self.sampler.start()

    def copy_sampled(self) -> None:
        while True:
            for gauge, read in list(self.sampled):
                gauge.set(read())
            time.sleep(SAMPLE_INTERVAL_S)

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of all the workers in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    def labeled(self, metric: Any, *values: str) -> Any:
        child = self.children.get((metric, values))
        if child is None:
            child = self.children.setdefault((metric, values), metric.labels(*values))
        return child
