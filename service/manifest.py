"""The exported model folder's manifest: the one contract between training and serving.

A model folder `models/<name>/` holds `encoder.onnx`, `decoder.onnx` and `manifest.json`, which this
schema describes. Training writes it (training/export.py); the service reads and checks it. Besides the
schema, this module defines once what both wings must agree on: the graphs' input and output names, the
pixel mapping, log(2 pi) and the bits/dim convention. It imports only pydantic, numpy and the standard
library, never either wing.

Graphs (N is dynamic):
  encoder.onnx: x float32 (N, C, H, W), values in [0, 1] -> mu, logvar float32 (N, D)
                (two-level models also mu2, logvar2 (N, D2) of q(z2|x))
  decoder.onnx: z float32 (N, D) -> the likelihood's parameters (LIKELIHOOD_OUTPUTS): for the chapter's Gaussian
                mean float32 (N, C, H, W), f[z] (for the Bernoulli likelihood, the pixel probabilities)
  prior.onnx:   two-level models: z2 float32 (N, D2) -> prior_mu, prior_logvar float32 (N, D) of Pr(z1|z2)
`declared_shapes` derives these shapes from the image and latent sizes; the service refuses a folder whose graphs
(or graph specs) disagree with them (service/model.py `check_graph`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
ENCODER_FILE = "encoder.onnx"
ATTRIBUTES_FILE = "attributes.json"
DECODER_FILE = "decoder.onnx"
PRIOR_FILE = "prior.onnx"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
BATCH_AXIS = "N"  # the dynamic batch axis of every graph input and output

BITS_PER_DIM_CONVENTION = (
    "dequantize: bpd = -(log p(x) - D ln L) / (D ln 2) with x = (k + u) / L, u ~ U[0,1) (density on [0,1]^D "
    "times the bin volume L^-D); binarize and discrete: bpd = -log P(x) / (D ln 2) (a probability mass, no "
    "dequantization term); plain: undefined"
)
LOG_2PI = math.log(2.0 * math.pi)

# Graph input and output names. Export names the graphs' tensors with these and lists them in the manifest's
# GraphSpecs; the service reads the names from the manifest.
ENCODER_INPUT = "x"
POSTERIOR_OUTPUTS = (("mu", "logvar"), ("mu2", "logvar2"))  # (mean, log-variance) of q(z_l|x), level 1 first
DECODER_INPUT = "z"
# The decoder's outputs, the likelihood's parameters, by likelihood type (LikelihoodSpec).
LIKELIHOOD_OUTPUTS = {"gaussian": ("mean",), "bernoulli": ("mean",), "pixel-gaussian": ("mean", "logvar"),
                      "logistic": ("loc", "log_scale"), "logistic-mixture": ("logits", "loc", "log_scale")}
PRIOR_INPUT, PRIOR_OUTPUTS = "z2", ("prior_mu", "prior_logvar")  # Pr(z1|z2) of two-level models

# How integer pixel levels k (of L levels) become model values x in training (training/data.py `to_unit`).
PIXEL_MODES = {
    "dequantize": "x = (k + u) / L, u ~ U[0, 1)",
    "plain": "x = k / (L - 1)",
    "binarize": "x ~ Bernoulli(k / (L - 1))",
    "discrete": "x = k / (L - 1), the likelihood a probability mass over the L levels",
}
# The likelihoods whose Pr(x|z) is a probability mass over the L levels x = k / (L - 1) (pixel mode "discrete").
DISCRETE_LIKELIHOODS = ("logistic", "logistic-mixture")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSpec(_Strict):
    channels: int = Field(ge=1, le=4)
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    value_range: tuple[float, float] = (0.0, 1.0)
    # Integer levels k of the source images (256 for 8-bit) and how they became model inputs:
    # dequantize x = (k + u) / levels; plain and discrete x = k / (levels - 1); binarize x ~ Bern(k / (levels - 1)).
    levels: int = Field(ge=2)
    pixel_mode: Literal["dequantize", "plain", "binarize", "discrete"]

    @property
    def num_dims(self) -> int:
        return self.channels * self.height * self.width

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


class LikelihoodSpec(_Strict):
    """Pr(x|z), given the decoder graph's outputs (LIKELIHOOD_OUTPUTS names them, in order; each (N, C, H, W),
    the mixture's (N, K, C, H, W)):
      gaussian          mean                   Norm[x; mean, sigma^2 I], sigma a number of this spec
      bernoulli         mean                   prod mean^x (1 - mean)^(1 - x) on binary images
      pixel-gaussian    mean, logvar           prod_d Norm[x_d; mean_d, e^logvar_d]
      logistic          loc, log_scale         prod_d P(k_d), a logistic(loc, e^log_scale) discretized to the
                                               L levels x = k / (L - 1), bin k = [x - h, x + h] with
                                               h = 1 / (2 (L - 1)), bins 0 and L - 1 open-ended
      logistic-mixture  logits, loc, log_scale  prod_d sum_j softmax(logits)_j P_j(k_d) over K = components"""

    type: Literal["gaussian", "bernoulli", "pixel-gaussian", "logistic", "logistic-mixture"]
    sigma: float | None = Field(default=None, gt=0)
    learned_sigma: bool = False
    components: int | None = Field(default=None, ge=1)  # logistic-mixture: K

    @property
    def discrete(self) -> bool:
        """A probability mass over the image's levels (pixel mode "discrete")."""
        return self.type in DISCRETE_LIKELIHOODS

    @field_validator("sigma")
    @classmethod
    def _sigma_finite(cls, v: float | None) -> float | None:
        if v is not None and not v < float("inf"):
            raise ValueError("sigma must be finite")
        return v


class PriorSpec(_Strict):
    type: Literal["standard_normal"] = "standard_normal"  # Pr(z) = Norm[0, I]


class GraphSpec(_Strict):
    file: str
    inputs: dict[str, list[str | int]]  # name -> shape, "N" the dynamic batch axis
    outputs: dict[str, list[str | int]]
    opset: int


class HierarchySpec(_Strict):
    """A two-level model z2 -> z1 -> x (training/hierarchical.py). The encoder then also outputs mu2 and
    logvar2 (N, D2) of q(z2|x); prior.onnx maps z2 (N, D2) to prior_mu, prior_logvar (N, D1) of Pr(z1|z2);
    Pr(z2) = Norm[0, I]. The decoder reads z1 (latent_dim = D1)."""

    latent_dims: list[Annotated[int, Field(ge=1)]] = Field(min_length=2, max_length=2)  # [D1, D2]: one prior graph
    prior: GraphSpec


class TrainingSpec(_Strict):
    dataset: str
    num_train: int
    num_test: int
    class_names: list[str]
    seed: int
    epochs: int
    steps: int
    seconds: float | None = None
    config: dict[str, Any]  # the full training config (training.config.RunConfig.to_dict())


class MetricsSpec(_Strict):
    split: str = "test"
    num_images: int
    elbo: float  # mean nats per image
    elbo_per_dim: float
    log_likelihood: float  # mean importance-sampled log Pr(x), nats per image
    log_likelihood_stderr: float  # standard error of that mean over the images (their spread)
    log_likelihood_k: int
    # How far each image's estimate has converged (None in folders exported before they were measured): the
    # mean over the images of the effective sample size of its K weights, and of its own standard error
    # sqrt(1 / ESS - 1 / K) (the delta method; the sampling error, not the spread between images).
    mean_effective_sample_size: float | None = None
    mean_sampling_stderr: float | None = None
    bits_per_dim: float | None
    bits_per_dim_convention: str = BITS_PER_DIM_CONVENTION
    seed: int


class AttributesSpec(_Strict):
    """Resynthesis directions: attributes.json holds {"names": [...], "means": [[...] x D], "counts": [...]},
    the mean posterior latent of each class; the direction from A to B is means[B] - means[A]."""

    file: str = "attributes.json"
    names: list[str]
    counts: list[int]
    source: str
    # Named directions: name -> [from attribute, to attribute].
    directions: dict[str, tuple[str, str]] = {}


class FileSpec(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Manifest(_Strict):
    format_version: Literal[1] = 1  # FORMAT_VERSION
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    created: str  # ISO 8601, UTC
    image: ImageSpec
    latent_dim: int = Field(ge=1)
    likelihood: LikelihoodSpec
    prior: PriorSpec = PriorSpec()
    encoder: GraphSpec
    decoder: GraphSpec
    training: TrainingSpec
    metrics: MetricsSpec | None = None
    attributes: AttributesSpec | None = None
    hierarchy: HierarchySpec | None = None  # None: the flat model, prior Norm[0, I] on z
    files: dict[str, FileSpec]  # every file of the folder but the manifest, with its hash

    @model_validator(mode="after")
    def _decoder_reads_level_1(self) -> Manifest:
        if self.hierarchy is not None and self.hierarchy.latent_dims[0] != self.latent_dim:
            raise ValueError(f"hierarchy.latent_dims[0] ({self.hierarchy.latent_dims[0]}) must equal latent_dim "
                             f"({self.latent_dim}): the decoder reads level 1")
        return self

    @model_validator(mode="after")
    def _likelihood_fits_the_pixels(self) -> Manifest:
        lik = self.likelihood
        if lik.discrete != (self.image.pixel_mode == "discrete"):
            raise ValueError(f"likelihood {lik.type!r} and pixel mode {self.image.pixel_mode!r} do not fit: the "
                             f"likelihoods {list(DISCRETE_LIKELIHOODS)} go with pixel mode 'discrete', and only they")
        if (lik.type == "logistic-mixture") != (lik.components is not None):
            raise ValueError("likelihood.components is the number of a logistic-mixture's components, and only its")
        if lik.type == "gaussian" and lik.sigma is None:
            raise ValueError("a gaussian likelihood needs its sigma")
        return self

    @property
    def latent_levels(self) -> list[int]:
        """The latent size of every level, level 1 (the decoder's) first."""
        return [self.latent_dim] if self.hierarchy is None else list(self.hierarchy.latent_dims)

    @property
    def graphs(self) -> dict[str, GraphSpec]:
        """Every graph by its role: encoder, decoder and, for two-level models, prior."""
        graphs = {"encoder": self.encoder, "decoder": self.decoder}
        if self.hierarchy is not None:
            graphs["prior"] = self.hierarchy.prior
        return graphs

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


@dataclass(frozen=True)
class Declared:
    """A tensor's shape as the manifest's image and latent sizes imply it, and which of them says so."""

    shape: list[str | int]
    source: str  # e.g. "image 1x28x28", "latent size 32 of z1"


def declared_shapes(manifest: Manifest) -> dict[str, tuple[list[Declared], list[Declared]]]:
    """Each graph role's (input shapes, output shapes), in the graph's order, from the manifest's image and
    latent levels alone (the module docstring's table): what a folder's graphs must take and give."""
    c, h, w = manifest.image.shape
    image = Declared([BATCH_AXIS, c, h, w], f"image {c}x{h}x{w}")
    levels = [Declared([BATCH_AXIS, d], f"latent size {d} of z{i + 1}")
              for i, d in enumerate(manifest.latent_levels)]
    outputs = [Declared(shape, f"{manifest.likelihood.type} likelihood's {name}, image {c}x{h}x{w}")
               for name, shape in likelihood_outputs(manifest.likelihood, manifest.image)]
    shapes = {"encoder": ([image], [level for level in levels for _ in range(2)]),  # (mean, logvar) per level
              "decoder": ([levels[0]], outputs)}
    for lower, upper in itertools.pairwise(levels):  # Pr(z_l | z_{l+1}): one prior graph below the top level
        shapes["prior"] = ([upper], [lower, lower])
    return shapes


class ManifestError(ValueError):
    """A model folder that cannot be served: missing or invalid manifest, or a file that fails its hash."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_spec(path: Path) -> FileSpec:
    return FileSpec(sha256=sha256_file(path), bytes=path.stat().st_size)


def load_manifest(folder: str | Path, verify: bool = True) -> Manifest:
    """Read and validate `folder/manifest.json`; with verify, check every listed file's sha256."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    # Messages name the folder by its name only: they reach API responses (GET /models, POST /admin/reload).
    if not path.is_file():
        raise ManifestError(f"{folder.name}: no {MANIFEST_FILE}")
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{folder.name}/{MANIFEST_FILE}: invalid manifest: {exc}") from exc
    if verify:
        verify_files(folder, manifest)
    return manifest


def verify_files(folder: Path, manifest: Manifest) -> None:
    for graph in manifest.graphs.values():
        if graph.file not in manifest.files:
            raise ManifestError(f"{folder.name}: {graph.file} is not listed in the manifest's files")
    for name, spec in manifest.files.items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ManifestError(f"{folder.name}: file name {name!r} is not a plain file name")
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{folder.name}: {name} is missing")
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ManifestError(f"{folder.name}: {name} sha256 {actual} does not match the manifest's {spec.sha256}")


def likelihood_outputs(spec: LikelihoodSpec, image: ImageSpec) -> list[tuple[str, list[str | int]]]:
    """The decoder graph's outputs for `spec`: (name, shape) in order, "N" the batch axis (LikelihoodSpec)."""
    pixels: list[str | int] = [BATCH_AXIS, *image.shape]
    if spec.type == "logistic-mixture":
        per_component: list[str | int] = [BATCH_AXIS, spec.components or 1, *image.shape]
        return [(name, per_component) for name in LIKELIHOOD_OUTPUTS[spec.type]]
    return [(name, pixels) for name in LIKELIHOOD_OUTPUTS[spec.type]]


def bits_per_dim(log_px: Any, num_dims: int, pixel_mode: str, levels: int) -> Any:
    """BITS_PER_DIM_CONVENTION for log-likelihoods in nats (a float or an array); None where undefined.
    Dequantized L-level images: the density on [0, 1]^D times the bin volume L^-D is a lower bound on the
    probability of the integer image (Theis et al. 2016); binary images: an exact probability."""
    if pixel_mode == "dequantize":
        return -(log_px - num_dims * math.log(levels)) / (num_dims * math.log(2))
    if pixel_mode in ("binarize", "discrete"):
        return -log_px / (num_dims * math.log(2))
    return None


@functools.cache
def served_pixel_values(pixel_mode: str, levels: int) -> tuple[np.ndarray, str]:
    """The model value of each 8-bit level k of an uploaded image, (256,) float32, and the formula: the mapping
    of PIXEL_MODES with no randomness. Dequantized models take the middle of the bin, x = (k_L + 0.5) / L,
    with k_L the 8-bit level rounded to the model's L levels; binarized ones threshold k / 255 at 0.5."""
    k = np.arange(256, dtype=np.float64)  # float64: uint8 k times (L - 1) would wrap around
    if pixel_mode == "dequantize":
        k_l = np.round(k * (levels - 1) / 255.0)
        return ((k_l + 0.5) / levels).astype(np.float32), f"x = (k + 0.5) / {levels}"
    if pixel_mode == "binarize":
        return (k / 255.0 >= 0.5).astype(np.float32), "x = 1 if k / 255 >= 0.5 else 0"
    if pixel_mode == "discrete":  # on the model's own levels, which its probability mass is over
        return (np.round(k * (levels - 1) / 255.0) / (levels - 1)).astype(np.float32), \
            f"x = round(k (L - 1) / 255) / (L - 1), L = {levels}"
    return (k / 255.0).astype(np.float32), "x = k / 255"
