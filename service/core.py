"""The service's use cases, shared by every protocol: typed inputs in, typed results out, no HTTP.

    core = Core(settings); await core.load()
    images = await core.read_images(model, [png_bytes], resize=True)
    encoding = await core.encode(model, images.x, samples=2, seed=7)

Inputs are numpy arrays (or the raw images `read_images` converts), a loaded model and options already
validated by their pydantic models (service/options.py); results are the dataclasses below. The registry,
the dynamic batchers (inside each model's graphs) and the worker pools are reached only through here:
requests await the graphs, so concurrent ones share onnxruntime calls; the log-likelihood estimate and
large image conversions run on worker threads; small ones run inline (service/offload.py). Problems are
ServiceErrors naming the input or option at fault.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from service.admission import WorkGate
from service.distributions import DiagonalGaussian
from service.errors import InvalidInput, NotFound, Unavailable
from service.estimator import LogLikelihood, log_likelihood
from service.images import Conversion, decode_base64, grid, image_from_array, image_from_bytes, pngs
from service.manifest import ImageSpec, bits_per_dim
from service.metrics import Metrics
from service.model import ServedModel
from service.offload import Workers, small_inputs, small_outputs, small_work
from service.registry import Registry, StartupError, load_registry
from service.runtime import settle_interpreter
from service.settings import Settings
from service.worker_group import WorkerGroup

log = logging.getLogger("service")
MAX_SEED = 2**53 - 1  # seeds stay exact in JSON everywhere (JavaScript's largest safe integer)
ImageSource = bytes | str | Any  # an image file's bytes, its base64 text, or an array of values in [0, 1]
Interpolation = Literal["linear", "slerp"]


def fresh_seed() -> int:
    return secrets.randbelow(MAX_SEED + 1)


@dataclass(frozen=True)
class Images:
    """Model inputs made from a request's images."""

    x: np.ndarray  # (N, C, H, W) float32 in the model's value range
    conversions: list[Conversion]  # what was done to each


@dataclass(frozen=True)
class Encoding:
    levels: list[DiagonalGaussian]  # q(z_l|x) per level, level 1 first, each (N, D_l) float32
    draws: np.ndarray | None  # (N, S, D) draws z = mu + sigma * eps of level 1, when asked for
    seed: int | None  # the seed of the draws


@dataclass(frozen=True)
class Generated:
    """Images made by the model, and what made them."""

    images: np.ndarray  # (N, C, H, W) float32
    seed: int | None  # the seed of the randomness used; None where there was none
    z: np.ndarray | None = None  # the latent codes decoded, where the use case chose them
    parameters: list[np.ndarray] | None = None  # the likelihood's parameters (the decoder's outputs) at z


@dataclass(frozen=True)
class Scores:
    estimate: LogLikelihood  # per image: log Pr(x), ELBO, effective sample size
    bits_per_dim: np.ndarray | None  # per image, the manifest's convention; None where undefined
    seed: int


class Core:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.workers = Workers(settings.worker_threads, settings.image_threads)
        self.registry: Registry | None = None  # None until loading is done
        self.startup_error: str | None = None
        # Set at SIGTERM (service/server.py): /readyz and new requests answer 503 while in-flight ones finish.
        self.draining = False
        self.loglik_gates: dict[str, WorkGate] = {}  # model name -> admission of its /loglik work
        self.group: WorkerGroup | None = None  # the other server processes, under --workers (service/workers.py)

    # --- life cycle ------------------------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every model folder on a worker thread; StartupError for a configuration that cannot serve."""
        started = time.perf_counter()
        try:
            self.registry = await self.workers.run(load_registry, self.settings, self.metrics, self.workers)
        except StartupError as exc:
            self.startup_error = str(exc)
            raise
        settle_interpreter()
        if self.group is not None:
            self.group.mark_ready()
        log.info("ready in %.2f s: models %s (default %s)", time.perf_counter() - started,
                 sorted(self.registry.models), self.registry.default)

    def close(self) -> None:
        if self.group is not None:
            self.group.leave()
        if self.registry is not None:
            self.registry.close()
        self.workers.close()

    def swap(self, registry: Registry) -> Registry:
        """Serve `registry` from now on and return the one it replaces. Requests that already hold a model keep
        it until they finish (a closed model's graphs still run, unbatched: service/batching.py)."""
        old, self.registry = self.ready(), registry
        return old

    def ready(self) -> Registry:
        if self.startup_error is not None:
            raise Unavailable(None, f"start-up failed: {self.startup_error}")
        if self.registry is None:
            raise Unavailable(None, "models are still loading")
        return self.registry

    def ready_to_serve(self) -> Registry:
        """What the readiness probes ask: this process's models, every worker's under --workers, no drain."""
        registry = self.ready()
        if self.draining:
            raise Unavailable(None, "shutting down")
        if self.group is not None and (loaded := self.group.ready_count()) < self.group.size:
            raise Unavailable(None, f"workers are still loading: {loaded} of {self.group.size} ready")
        return registry

    def model(self, name: str | None) -> ServedModel:
        """The named model, or the default one."""
        registry = self.ready()
        served = registry.get(name)
        if served is None:
            known = sorted(registry.models)
            raise NotFound("model", f"unknown model {name!r}; loaded: {known}" if name else "no model is loaded",
                           known, option=True)
        return served

    # --- inputs ----------------------------------------------------------------------------------------------

    async def read_images(self, model: ServedModel, sources: list[ImageSource], resize: bool) -> Images:
        """Image files (bytes), base64 text or arrays -> model inputs, converted as service/images.py says."""
        if not sources:
            raise InvalidInput("images", "no images in the request")
        self.check_count("images", len(sources))
        spec = model.manifest.image
        inline = small_inputs(sources, spec.height * spec.width)
        x, conversions = await self.workers.run_images(not inline, convert_images, sources, spec, resize,
                                                       self.settings.max_image_pixels)
        return Images(x, conversions)

    def image_tensor(self, model: ServedModel, x: np.ndarray, field: str) -> np.ndarray:
        """Model inputs sent as a tensor: the model's shape (N, C, H, W), finite values in its value range."""
        spec = model.manifest.image
        if x.ndim != 4 or x.shape[1:] != spec.shape or len(x) == 0:
            expected = ", ".join(map(str, spec.shape))
            raise InvalidInput(field, f"has shape {list(x.shape)}, the model takes [N, {expected}] with N >= 1",
                               [-1, *spec.shape])
        self.check_count(field, len(x))
        lo, hi = spec.value_range
        if not np.all(np.isfinite(x)) or x.min() < lo or x.max() > hi:
            raise InvalidInput(field, f"values must be finite and lie in [{lo:g}, {hi:g}]", [lo, hi])
        steps = {"binarize": 1, "discrete": spec.levels - 1}.get(spec.pixel_mode)
        if steps is not None and not np.allclose(x * steps, np.round(x * steps), rtol=0, atol=1e-3):
            # a probability mass is over these values only
            raise InvalidInput(field, f"values must be the model's levels k / {steps}, k = 0 .. {steps}",
                               [0, steps])
        return np.ascontiguousarray(x, dtype=np.float32)

    def latents(self, model: ServedModel, rows: Any, field: str) -> np.ndarray:
        """Latent vectors (N, D) of the decoder's level: finite, within the latent limit."""
        d = model.latent_dim
        if len(rows) == 0:
            raise InvalidInput(field, "no latent vectors")
        self.check_count(field, len(rows), "vectors")
        for i, row in enumerate(rows):
            if len(row) != d:
                raise InvalidInput(f"{field}[{i}]", f"has {len(row)} values, the model's latent size is {d}", d)
        z = np.asarray(rows, dtype=np.float64)
        if not np.all(np.isfinite(z)):
            raise InvalidInput(field, "holds NaN or infinite values")
        bound = self.settings.max_latent_abs
        if np.abs(z).max() > bound:
            raise InvalidInput(field, f"values must lie within +-{bound:g}", bound)
        return z

    def check_count(self, field: str, n: int, noun: str = "images") -> None:
        if n > self.settings.max_images:
            raise InvalidInput(field, f"{n} {noun}, over the limit per request", self.settings.max_images)

    # --- use cases -------------------------------------------------------------------------------------------

    async def encode(self, model: ServedModel, x: np.ndarray, samples: int = 0, seed: int | None = None
                     ) -> Encoding:
        """q(z_l|x) of every level; with samples > 0, that many draws of level 1 per image."""
        levels = model.levels(await model.encoder(x))
        self.count("encode", model, len(x))
        if not samples:
            return Encoding(levels, None, None)
        seed = fresh_seed() if seed is None else seed
        q = levels[0]
        eps = np.random.default_rng(seed).standard_normal((len(x), samples, model.latent_dim))
        return Encoding(levels, DiagonalGaussian(q.mean[:, None], q.logvar[:, None]).sample(eps), seed)

    async def decode(self, model: ServedModel, z: np.ndarray, noise: bool = False, seed: int | None = None
                     ) -> Generated:
        """f[z]; with noise, x ~ Pr(x|z) drawn with the seed."""
        params = await model.decoder(z)
        self.count("decode", model, len(z))
        if not noise:
            return Generated(await self.mean_image(model, params), None, parameters=params)
        seed = fresh_seed() if seed is None else seed
        return Generated(await self.draw_images(model, params, seed), seed, parameters=params)

    async def sample(self, model: ServedModel, n: int, seed: int | None = None, temperature: float = 1.0,
                     noise: bool = False) -> Generated:
        """z from the prior (its noise scaled by temperature), decoded; with noise, x ~ Pr(x|z). The same seed
        gives the same images: the latents use the seed's stream, the observation noise seed + 1's."""
        seed = fresh_seed() if seed is None else seed
        z = await model.sample_latents(n, np.random.default_rng(seed), temperature)
        params = await model.decoder(z)
        images = await (self.draw_images(model, params, seed + 1) if noise else self.mean_image(model, params))
        self.count("sample", model, n)
        return Generated(images, seed)

    async def mean_image(self, model: ServedModel, params: list[np.ndarray]) -> np.ndarray:
        """The likelihood's mean at the decoder's outputs: inline when it is a parameter or small work, else on a
        worker thread (a discretized logistic's mean sums L - 1 sigmoids per pixel)."""
        likelihood = model.likelihood
        if small_work(likelihood.mean_work(params)):
            return likelihood.mean(params)
        return await self.workers.run(likelihood.mean, params)

    async def draw_images(self, model: ServedModel, params: list[np.ndarray], seed: int) -> np.ndarray:
        """x ~ Pr(x|z) at the decoder's outputs, drawn with the seed: inline when a few values are drawn per
        parameter value (the chapter's Gaussian at the largest n stays inline), else on a worker thread (a
        mixture draws a component and a logistic for every pixel)."""
        if small_work(sum(p.size for p in params)):
            return model.likelihood.sample(params, np.random.default_rng(seed))
        return await self.workers.run(model.likelihood.sample, params, np.random.default_rng(seed))

    async def log_likelihood(self, model: ServedModel, x: np.ndarray, k: int, seed: int | None = None) -> Scores:
        """Importance-sampled log Pr(x) per image with k draws (service/estimator.py), on a worker thread, once
        admitted (service/admission.py). If the request is cancelled (its client went away), the estimate stops
        before its next chunk."""
        seed = fresh_seed() if seed is None else seed
        # draws per decoder pass: its outputs stay within loglik_batch_rows images' worth (results do not depend on it)
        chunk = max(1, self.settings.loglik_batch_rows // (len(x) * model.values_per_pixel))
        stop = threading.Event()
        async with self.loglik_gate(model).admit(k * len(x)):
            try:
                estimate = await self.workers.run(log_likelihood, model, x, k, seed, chunk, stop.is_set)
            except asyncio.CancelledError:
                stop.set()
                raise
        self.count("log_likelihood", model, len(x))
        spec = model.manifest.image
        return Scores(estimate, bits_per_dim(estimate.log_likelihood, spec.num_dims, spec.pixel_mode, spec.levels),
                      seed)

    def loglik_gate(self, model: ServedModel) -> WorkGate:
        gate = self.loglik_gates.get(model.name)
        if gate is None:
            s = self.settings
            gate = self.loglik_gates[model.name] = WorkGate(model.name, s.loglik_max_rows, s.loglik_concurrency,
                                                            s.retry_after_s, self.metrics)
        return gate

    async def reconstruct(self, model: ServedModel, x: np.ndarray) -> Generated:
        """f[mu(x)]: the decoded posterior means."""
        q = model.levels(await model.encoder(x))[0]
        self.count("reconstruct", model, len(x))
        return Generated((await model.decoder(q.mean))[0], None)

    async def resynthesize(self, model: ServedModel, x: np.ndarray, strength: float, start: str | None = None,
                           end: str | None = None, direction: str | None = None) -> Generated:
        """Decode mu(x) + strength * (mean_end - mean_start) (Prince ch. 17, resynthesis): attributes by name
        (start -> end) or a named direction of the model."""
        vector = attribute_direction(model, start, end, direction)
        q = model.levels(await model.encoder(x))[0]
        z = q.mean + strength * vector[None, :]  # (N, D)
        self.count("resynthesize", model, len(x))
        return Generated((await model.decoder(z))[0], None, z)

    async def interpolate(self, model: ServedModel, ends: np.ndarray | Images, steps: int,
                          method: Interpolation = "linear") -> Generated:
        """Decode `steps` points from ends[0] to ends[1]: two latent vectors, or two images' posterior means."""
        if isinstance(ends, Images):
            if len(ends.x) != 2:
                raise InvalidInput("images", f"give exactly 2 images, got {len(ends.x)}", 2)
            ends = model.levels(await model.encoder(ends.x))[0].mean.astype(np.float64)
        z = latent_path(ends[0], ends[1], steps, method)
        self.count("interpolate", model, steps)
        return Generated((await model.decoder(z))[0], None, z)

    def count(self, use_case: str, model: ServedModel, images: int) -> None:
        self.metrics.labeled(self.metrics.images, use_case, model.name).inc(images)

    # --- outputs ---------------------------------------------------------------------------------------------

    async def png_files(self, images: np.ndarray) -> list[bytes]:
        """One PNG file per image (N, C, H, W), encoded inline when small, else on the image thread."""
        return await self.workers.run_images(not small_outputs(len(images), images.size), pngs, images)

    async def png_grid(self, images: np.ndarray, ncols: int | None = None) -> bytes:
        """One PNG: the image itself, or a grid of several (`ncols` wide, default square)."""
        tiled = images if len(images) == 1 else grid(images, ncols)[None]
        return (await self.png_files(tiled))[0]


def convert_images(sources: list[ImageSource], spec: ImageSpec, resize: bool, max_pixels: int
                   ) -> tuple[np.ndarray, list[Conversion]]:
    """Each source -> (C, H, W) model input; the batch (N, C, H, W) and each one's conversion."""
    xs, conversions = [], []
    for i, source in enumerate(sources):
        if isinstance(source, bytes | str):
            data = decode_base64(source, f"images[{i}]") if isinstance(source, str) else source
            x, conversion = image_from_bytes(data, f"images[{i}]", spec, resize, max_pixels)
        else:
            x, conversion = image_from_array(source, f"arrays[{i}]", spec, resize, max_pixels)
        xs.append(x)
        conversions.append(conversion)
    return (xs[0][None] if len(xs) == 1 else np.stack(xs)), conversions


def attribute_direction(model: ServedModel, start: str | None, end: str | None, name: str | None) -> np.ndarray:
    """mean_end - mean_start of the model's attribute means, by attribute names or a named direction."""
    spec = model.manifest.attributes
    if spec is None or not model.attributes:
        raise InvalidInput("model", f"model {model.name!r} has no attributes (export it with labelled data)",
                           option=True)
    if name is not None:
        if name not in spec.directions:
            raise InvalidInput("direction", f"unknown direction {name!r}", sorted(spec.directions), option=True)
        start, end = spec.directions[name]
    for value, option in ((start, "from"), (end, "to")):
        if value is None:
            raise InvalidInput(option, "give from and to (attribute names), or direction", option=True)
        if value not in model.attributes:
            raise InvalidInput(option, f"unknown attribute {value!r}", spec.names, option=True)
    return model.attributes[end] - model.attributes[start]  # type: ignore[index]


def latent_path(z0: np.ndarray, z1: np.ndarray, steps: int, method: Interpolation) -> np.ndarray:
    """(steps, D) points from z0 to z1: straight, or along the great circle (slerp, Shoemake 1985), which keeps
    the norm typical of the prior's samples instead of shrinking it mid-way."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "slerp":
        cos = float(np.dot(z0, z1) / (np.linalg.norm(z0) * np.linalg.norm(z1) + 1e-12))
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega > 1e-6:
            return (np.sin((1 - t) * omega) * z0 + np.sin(t * omega) * z1) / np.sin(omega)
    return (1 - t) * z0 + t * z1
