"""What the calls return: the service's JSON answers as numpy arrays, and several answers joined into one.

Each `from_json` reads one answer and raises UnexpectedResponseError for a body without the expected fields;
each `join` puts the answers of consecutive requests (one call split by the per-request limits) back together,
in order.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from vae_client.errors import UnexpectedResponseError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

Conversion = dict[str, Any]  # what the service did to one input image (format, mode, resize, pixel mapping)
T = TypeVar("T")


def read(build: Callable[[], T], what: str) -> T:
    """`build()`, with a missing or ill-typed field of the answer as UnexpectedResponseError."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise UnexpectedResponseError(f"unexpected {what} answer: {type(exc).__name__}: {exc}") from exc


def floats(values: Any, dtype: type[np.floating[Any]] = np.float32) -> np.ndarray:
    return np.asarray(values, dtype=dtype)


def same(values: Sequence[T], what: str) -> T:
    if any(v != values[0] for v in values[1:]):
        raise UnexpectedResponseError(f"the requests of one call were answered with different {what}: {values}")
    return values[0]


@dataclass(frozen=True)
class Level:
    """The posterior q(z_l|x) of one latent level: `name` z1 (the decoder's level) or z2, mean and log-variance
    [N, D_l] float32."""

    name: str
    mean: np.ndarray
    logvar: np.ndarray


@dataclass(frozen=True)
class EncodeResult:
    """`mean`, `logvar`: the posterior q(z|x) per image, [N, D] float32 (two-level models: z1, the decoder's
    level); `samples`: [N, S, D] float32 draws z = mean + exp(logvar / 2) * eps when `samples` > 0 was asked,
    else None; `levels`: every level (z1, then z2) for two-level models, else None; `seed`: the seed of the
    draws (None without draws); `conversions`: what was done to each input image."""

    model: str
    latent_dim: int
    mean: np.ndarray
    logvar: np.ndarray
    samples: np.ndarray | None
    levels: list[Level] | None
    seed: int | None
    conversions: list[Conversion] = field(repr=False)

    def __len__(self) -> int:
        return len(self.mean)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EncodeResult:
        def build() -> EncodeResult:
            results = body["results"]
            draws = [r["z"] for r in results]
            levels = None
            if results and results[0].get("levels"):
                names = [level["name"] for level in results[0]["levels"]]
                levels = [Level(name, floats([r["levels"][j]["mean"] for r in results]),
                                floats([r["levels"][j]["logvar"] for r in results])) for j, name in enumerate(names)]
            return cls(model=body["model"], latent_dim=int(body["latent_dim"]),
                       mean=floats([r["mean"] for r in results]), logvar=floats([r["logvar"] for r in results]),
                       samples=None if any(d is None for d in draws) else floats(draws), levels=levels,
                       seed=body.get("seed"), conversions=[r["conversion"] for r in results])
        return read(build, "/encode")

    @classmethod
    def join(cls, parts: Sequence[EncodeResult], seed: int | None) -> EncodeResult:
        first = parts[0]
        if len(parts) == 1:
            return first
        levels = None
        if first.levels is not None:
            levels = [Level(level.name, np.concatenate([p.levels[j].mean for p in parts if p.levels]),
                            np.concatenate([p.levels[j].logvar for p in parts if p.levels]))
                      for j, level in enumerate(first.levels)]
        samples = [p.samples for p in parts if p.samples is not None]
        return cls(model=same([p.model for p in parts], "models"), latent_dim=first.latent_dim,
                   mean=np.concatenate([p.mean for p in parts]), logvar=np.concatenate([p.logvar for p in parts]),
                   samples=np.concatenate(samples) if len(samples) == len(parts) else None, levels=levels,
                   seed=seed, conversions=[c for p in parts for c in p.conversions])


@dataclass(frozen=True)
class LogLikResult:
    """Per image, [N] float64 (the service's numbers exactly): `log_likelihood` (importance-sampled log Pr(x),
    nats), `elbo`, `bits_per_dim` (NaN where the model's convention leaves it undefined), `stderr` (the
    estimate's delta-method standard error, nats; also `log_likelihood_stderr`), `effective_sample_size`;
    `warnings`: the service's warning per image (None, or a low effective sample size); `k` and `seed` used."""

    model: str
    k: int
    seed: int
    bits_per_dim_convention: str = field(repr=False)
    log_likelihood: np.ndarray
    elbo: np.ndarray
    bits_per_dim: np.ndarray
    stderr: np.ndarray
    effective_sample_size: np.ndarray
    warnings: list[str | None]
    conversions: list[Conversion] = field(repr=False)

    @property
    def log_likelihood_stderr(self) -> np.ndarray:
        return self.stderr

    def __len__(self) -> int:
        return len(self.log_likelihood)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> LogLikResult:
        def build() -> LogLikResult:
            results = body["results"]

            def column(name: str) -> np.ndarray:
                return floats([np.nan if r[name] is None else r[name] for r in results], np.float64)

            return cls(model=body["model"], k=int(body["k"]), seed=int(body["seed"]),
                       bits_per_dim_convention=body["bits_per_dim_convention"],
                       log_likelihood=column("log_likelihood"), elbo=column("elbo"),
                       bits_per_dim=column("bits_per_dim"), stderr=column("log_likelihood_stderr"),
                       effective_sample_size=column("effective_sample_size"),
                       warnings=[r.get("warning") for r in results], conversions=[r["conversion"] for r in results])
        return read(build, "/loglik")

    @classmethod
    def join(cls, parts: Sequence[LogLikResult]) -> LogLikResult:
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        return cls(model=same([p.model for p in parts], "models"), k=same([p.k for p in parts], "k"),
                   seed=same([p.seed for p in parts], "seeds"),
                   bits_per_dim_convention=parts[0].bits_per_dim_convention,
                   log_likelihood=cat("log_likelihood"), elbo=cat("elbo"), bits_per_dim=cat("bits_per_dim"),
                   stderr=cat("stderr"), effective_sample_size=cat("effective_sample_size"),
                   warnings=[w for p in parts for w in p.warnings],
                   conversions=[c for p in parts for c in p.conversions])


@dataclass(frozen=True)
class Images:
    """Images the model made. `arrays`: [N, C, H, W] float32, the model's values as the service computed them
    (rounded to 6 decimals; with noise=true a Gaussian model's values may leave its range); `png`: the service's
    PNG file of each (values clipped to the range, 8 bits); `z`: the latent codes decoded, [N, D] float32, where
    the call chose them (resynthesize, interpolate), else None; `seed`: the seed that reproduces the call (None
    when no randomness was used); `conversions`: what was done to each input image (calls that take images)."""

    model: str
    arrays: np.ndarray
    png: list[bytes] = field(repr=False)
    z: np.ndarray | None
    seed: int | None
    conversions: list[Conversion] | None = field(repr=False)

    def __len__(self) -> int:
        return len(self.png)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.arrays)

    def to_pil(self) -> list[PILImage]:
        """Each image as a PIL image (grey or RGB; needs Pillow)."""
        try:
            from PIL import Image
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Images.to_pil needs Pillow: pip install Pillow") from exc
        images: list[PILImage] = []
        for data in self.png:
            image = Image.open(io.BytesIO(data))
            image.load()
            images.append(image)
        return images

    def save(self, directory: str | Path, prefix: str = "image") -> list[Path]:
        """Writes each image's PNG file to `directory` (made if missing) as `{prefix}-{i:04d}.png`; returns the
        paths, in order."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, data in enumerate(self.png):
            path = folder / f"{prefix}-{i:04d}.png"
            path.write_bytes(data)
            paths.append(path)
        return paths

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Images:
        def build() -> Images:
            shape = [len(body["images"]), *body["shape"]]  # the client always asks for include_arrays=true
            return cls(model=body["model"], png=[base64.b64decode(s) for s in body["images"]],
                       arrays=floats(body["arrays"]).reshape(shape),
                       z=None if body.get("z") is None else floats(body["z"]), seed=body.get("seed"),
                       conversions=body.get("conversions"))
        return read(build, "image")

    @classmethod
    def join(cls, parts: Sequence[Images], seed: int | None) -> Images:
        first = parts[0]
        if len(parts) == 1:
            return first
        zs = [p.z for p in parts if p.z is not None]
        conversions = [p.conversions for p in parts if p.conversions is not None]
        return cls(model=same([p.model for p in parts], "models"), arrays=np.concatenate([p.arrays for p in parts]),
                   png=[f for p in parts for f in p.png], z=np.concatenate(zs) if len(zs) == len(parts) else None,
                   seed=seed, conversions=[c for cs in conversions for c in cs] if conversions else None)


@dataclass(frozen=True)
class ModelInfo:
    """One served model: its name, whether it is the default, the execution providers its sessions use, and
    its manifest (docs/model-folder.md) as a dict; the properties read the manifest's most used fields."""

    name: str
    default: bool
    providers: list[str]
    manifest: dict[str, Any]

    @property
    def description(self) -> str:
        return str(self.manifest.get("description", ""))

    @property
    def latent_dim(self) -> int:
        """The size of the latent the decoder reads (z1 for two-level models): `decode`'s vectors."""
        return int(self.manifest["latent_dim"])

    @property
    def latent_dims(self) -> list[int]:
        """The size of every latent level: [D] for flat models, [D1, D2] for two-level ones."""
        hierarchy = self.manifest.get("hierarchy")
        return [int(d) for d in hierarchy["latent_dims"]] if hierarchy else [self.latent_dim]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        image = self.manifest["image"]
        return int(image["channels"]), int(image["height"]), int(image["width"])

    @property
    def value_range(self) -> tuple[float, float]:
        low, high = self.manifest["image"]["value_range"]
        return float(low), float(high)

    @property
    def attributes(self) -> list[str]:
        """The attribute names `resynthesize` takes (empty for a model exported without them)."""
        spec = self.manifest.get("attributes")
        return list(spec["names"]) if spec else []

    @property
    def directions(self) -> dict[str, tuple[str, str]]:
        """The named directions `resynthesize` takes: name -> (from, to)."""
        spec = self.manifest.get("attributes")
        return {name: (pair[0], pair[1]) for name, pair in (spec.get("directions") or {}).items()} if spec else {}

    @property
    def metrics(self) -> dict[str, Any]:
        """The test metrics recorded at export (ELBO, log-likelihood, bits/dim, ...)."""
        return dict(self.manifest.get("metrics") or {})

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelInfo:
        return read(lambda: cls(name=body["name"], default=bool(body["default"]), providers=list(body["providers"]),
                                manifest=dict(body["manifest"])), "model")


@dataclass(frozen=True)
class ModelList:
    """`GET /models`: the loaded models (sorted by name), the default's name, and the folders that failed to
    load with the reason. Iterating gives the models; `list[name]` one of them."""

    default: str | None
    models: list[ModelInfo]
    skipped: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __getitem__(self, name: str) -> ModelInfo:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ModelList:
        return read(lambda: cls(default=body["default"], models=[ModelInfo.from_json(m) for m in body["models"]],
                                skipped=dict(body.get("skipped") or {})), "/models")
