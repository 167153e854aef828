"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        self.open_connections = Gauge("vae_open_connections", "open HTTP connections", registry=self.registry)
        self.in_progress = Gauge("vae_requests_in_progress", "HTTP requests being answered", registry=self.registry)
        self.queued_rows = Gauge("vae_batch_queued_rows", "rows waiting for a graph's batcher", ["model", "graph"],
                                 registry=self.registry)
        self.loglik_rows = Gauge("vae_loglik_rows_admitted", "importance-sample rows of /loglik admitted (running "
                                 "or waiting)", ["model"], registry=self.registry)
        self.reloads = Counter("vae_model_reloads_total", "model folder (re)loads by result (loaded, unchanged, "
                               "removed, failed)", ["result"], registry=self.registry)
        # (metric, label values) -> its child: `labels()` validates and locks on every call (several
        # times a request); the label values are few (route paths, loaded models, status codes)
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def labeled(self, metric: Any, *values: str) -> Any:
        child = self.children.get((metric, values))
        if child is None:
            child = self.children.setdefault((metric, values), metric.labels(*values))
        return child
