"""The inference layer: numpy in, numpy out, over a ServedModel's shared onnxruntime sessions.

The plain methods block; routes call them from a worker thread (onnxruntime releases the GIL). The
`*_async` methods go through the dynamic batcher of their (model, graph) when batching is on, so that
concurrent small requests share one onnxruntime call (service/batching.py), else through a worker thread.
"""

from __future__ import annotations

import time

import numpy as np

from service.batching import Batcher
from service.estimators import LogLikelihood, log_likelihood, log_likelihood_two_level
from service.metrics import Metrics
from service.offload import Workers
from service.registry import ServedModel
from service.settings import Settings

INPUT_NAMES = {"encoder": "x", "decoder": "z", "prior": "z2"}


class Inference:
    def __init__(self, metrics: Metrics, settings: Settings, workers: Workers):
        self.metrics, self.loglik_batch_rows, self.workers = metrics, settings.loglik_batch_rows, workers
        self.batching, self.batch_max_rows = settings.batching, settings.batch_max_rows
        self.batch_max_delay = settings.batch_max_delay_ms / 1000
        self.batchers: dict[tuple[str, str], Batcher] = {}

    async def run_async(self, model: ServedModel, graph: str, rows: np.ndarray) -> list[np.ndarray]:
        """One graph on rows (N, ...), batched with concurrent calls when batching is on."""
        if not self.batching:
            return await self.workers.run(self._run, model, graph, {INPUT_NAMES[graph]: rows})
        key = (model.name, graph)
        if key not in self.batchers:
            self.batchers[key] = Batcher(lambda b: self._run(model, graph, {INPUT_NAMES[graph]: b}),
                                         self.batch_max_rows, self.batch_max_delay, self.metrics, *key)
        return await self.batchers[key](rows)

    async def encode_levels_async(self, model: ServedModel, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out = await self.run_async(model, "encoder", x)
        return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    async def encode_async(self, model: ServedModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (await self.encode_levels_async(model, x))[0]

    async def decode_async(self, model: ServedModel, z: np.ndarray) -> np.ndarray:
        return (await self.run_async(model, "decoder", np.ascontiguousarray(z, dtype=np.float32)))[0]

    async def sample_async(self, model: ServedModel, n: int, seed: int, temperature: float, noise: bool
                           ) -> np.ndarray:
        """z ~ Norm[0, temperature^2 I], decoded; with noise, x ~ Pr(x|z). Same seed, same images."""
        # Flat models: n x D normal draws, cheaper than a thread hop; two-level ones run the prior graph.
        z = await self.workers.run_if_large(model.manifest.hierarchy is not None, self.sample_latents, model, n,
                                            seed, temperature)
        mean = await self.decode_async(model, z)
        return self.observe(model, mean, seed + 1) if noise else mean

    def close(self) -> None:
        for batcher in self.batchers.values():
            batcher.close()

    def _run(self, model: ServedModel, graph: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = {"encoder": model.encoder, "decoder": model.decoder, "prior": model.prior}[graph]
        assert session is not None, f"{model.name} has no {graph} graph"
        started = time.perf_counter()
        out = session.run(None, feed)
        self.metrics.labeled(self.metrics.inference, model.name, graph).observe(time.perf_counter() - started)
        return out

    def encode_levels(self, model: ServedModel, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(mu, logvar)] per level: one for flat models, [(z1), (z2)] for two-level ones."""
        out = self._run(model, "encoder", {"x": x})
        return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]

    def prior(self, model: ServedModel, z2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pr(z1|z2) of a two-level model: z2 (N, D2) -> mean, logvar (N, D1)."""
        m, logvar = self._run(model, "prior", {"z2": np.ascontiguousarray(z2, dtype=np.float32)})
        return m, logvar

    def decode(self, model: ServedModel, z: np.ndarray) -> np.ndarray:
        """z (N, D) float32 -> the likelihood's mean (N, C, H, W)."""
        (mean,) = self._run(model, "decoder", {"z": np.ascontiguousarray(z, dtype=np.float32)})
        return mean

    def draw_latents(self, mu: np.ndarray, logvar: np.ndarray, samples: int, seed: int) -> np.ndarray:
        """(N, samples, D) draws z = mu + exp(logvar / 2) * eps from q(z|x)."""
        eps = np.random.default_rng(seed).standard_normal((mu.shape[0], samples, mu.shape[1]))
        return mu[:, None, :] + np.exp(0.5 * logvar[:, None, :]) * eps

    def observe(self, model: ServedModel, mean: np.ndarray, seed: int) -> np.ndarray:
        """x ~ Pr(x|z) given its mean: the chapter's generative process (Gaussian: + sigma * eps)."""
        rng = np.random.default_rng(seed)
        lik = model.manifest.likelihood
        if lik.type == "gaussian":
            return (mean + float(lik.sigma or 0.0) * rng.standard_normal(mean.shape)).astype(np.float32)
        return (rng.random(mean.shape) < mean).astype(np.float32)

    def sample_latents(self, model: ServedModel, n: int, seed: int, temperature: float) -> np.ndarray:
        """(n, D) draws of the decoder's latent from the prior (through both levels for two-level models)."""
        rng = np.random.default_rng(seed)
        hierarchy = model.manifest.hierarchy
        if hierarchy is None:
            z = temperature * rng.standard_normal((n, model.manifest.latent_dim))
        else:  # through both levels: z2 ~ Norm[0, t^2 I], z1 ~ Norm[m(z2), t^2 s^2(z2)]
            d1, d2 = hierarchy.latent_dims
            m, logvar = self.prior(model, temperature * rng.standard_normal((n, d2)))
            z = m + temperature * np.exp(0.5 * logvar) * rng.standard_normal((n, d1))
        return z

    def latent_path(self, z0: np.ndarray, z1: np.ndarray, steps: int, method: str) -> np.ndarray:
        """(steps, D) points from z0 to z1: straight, or along the great circle (slerp, Shoemake 1985),
        which keeps the norm typical of the prior's samples instead of shrinking it mid-way."""
        t = np.linspace(0.0, 1.0, steps)[:, None]
        if method == "slerp":
            cos = float(np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1) + 1e-12))
            omega = np.arccos(np.clip(cos, -1.0, 1.0))
            if omega > 1e-6:
                return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
        return (1 - t) * z0 + t * z1

    def log_likelihood(self, model: ServedModel, x: np.ndarray, k: int, seed: int) -> LogLikelihood:
        chunk = max(1, self.loglik_batch_rows // len(x))  # samples per decoder pass; results do not depend on it
        levels = self.encode_levels(model, x)
        lik = model.manifest.likelihood
        if model.manifest.hierarchy is not None:
            return log_likelihood_two_level(x, levels[0], levels[1], lambda z2: self.prior(model, z2),
                                            lambda z: self.decode(model, z), lik, k, seed, chunk)
        mu, logvar = levels[0]
        return log_likelihood(x, mu, logvar, lambda z: self.decode(model, z), lik, k, seed, chunk)
