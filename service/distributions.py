"""The distributions of a served model in numpy: latent Gaussians and the likelihoods Pr(x|z).

The likelihood type is read once, by `likelihood_of`; estimators and use cases call `log_prob` and `sample`
and never branch on it. Log-densities are float64 and reduce over the last axis (latents) or over the
image axes (likelihoods), so callers get one value per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.manifest import LOG_2PI, LikelihoodSpec

# Bernoulli probabilities come out of the graph after the sigmoid; clip so log(0) never happens.
PROB_EPS = 1e-12


@dataclass(frozen=True)
class DiagonalGaussian:
    """Norm[mean, diag(exp(logvar))] over the last axis: q(z_l|x), a level's prior, or Norm[0, I]."""

    mean: np.ndarray  # (..., D)
    logvar: np.ndarray  # (..., D)

    @classmethod
    def standard(cls, shape: tuple[int, ...]) -> DiagonalGaussian:
        """Norm[0, I]: the prior of the top latent level."""
        return cls(np.zeros(shape), np.zeros(shape))

    @property
    def std(self) -> np.ndarray:
        return np.exp(0.5 * self.logvar)

    def sample(self, eps: np.ndarray) -> np.ndarray:
        """z = mean + std * eps for standard-normal eps broadcast against (..., D) (the reparameterization)."""
        return self.mean + self.std * eps

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        """log Norm[z; mean, diag var] summed over D: -0.5 sum(log 2pi + logvar + (z - mean)^2 / var)."""
        return -0.5 * np.sum(LOG_2PI + self.logvar + (z - self.mean) ** 2 * np.exp(-self.logvar), axis=-1)

    def astype(self, dtype: type) -> DiagonalGaussian:
        return DiagonalGaussian(self.mean.astype(dtype), self.logvar.astype(dtype))


class Likelihood(Protocol):
    """Pr(x|z) given the decoder graph's outputs `params` (its parameters, in the manifest's order; each
    (..., N, C, H, W), the mixture's (..., N, K, C, H, W))."""

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        """x (N, C, H, W) -> log Pr(x|z) (..., N), float64."""
        ...

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        """E[x|z]: the image the decoder means, float32 (..., N, C, H, W)."""
        ...

    def mean_work(self, params: list[np.ndarray]) -> int:
        """Element operations `mean` takes beyond reading the parameters (where it runs: service/offload.py)."""
        ...

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """One draw x ~ Pr(x|z) per image: the chapter's generative process. float32, the mean's shape."""
        ...

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel a mean m and a variance v, float64 (..., N, C, H, W), such that (x - m)^2 / (2 v) is the log
        density's curvature in m: what the log-likelihood's proposal is fitted with (service/laplace.py). The
        Gaussians' mean and variance; the Bernoulli's p and p (1 - p); a logistic's location, clipped to the
        value range (the edge bins are flat beyond it), and its inverse Fisher information 3 s^2 plus a bin's
        width^2 / 12."""
        ...


def image_axes(a: np.ndarray) -> tuple[int, int, int]:
    return a.ndim - 3, a.ndim - 2, a.ndim - 1


@dataclass(frozen=True)
class GaussianLikelihood:
    """Pr(x|z) = Norm[x; f[z], sigma^2 I] on R^D, the chapter's spherical Gaussian; params: [f[z]]."""

    sigma: float

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        # -D/2 log(2 pi sigma^2) - ||x - f[z]||^2 / (2 sigma^2): one squared distance per image
        (mean,) = params
        d = math.prod(x.shape[1:])
        squared = np.sum((x.astype(np.float64) - mean.astype(np.float64)) ** 2, axis=image_axes(mean))
        return -0.5 * squared / self.sigma**2 - d * (math.log(self.sigma) + 0.5 * LOG_2PI)

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        return params[0]

    def mean_work(self, params: list[np.ndarray]) -> int:
        return 0  # the mean is a parameter

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        (mean,) = params
        return (mean + self.sigma * rng.standard_normal(mean.shape)).astype(np.float32)

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean = params[0].astype(np.float64)
        return mean, np.full(mean.shape, self.sigma**2)


@dataclass(frozen=True)
class BernoulliLikelihood:
    """Pr(x|z) = prod_d p_d^x_d (1 - p_d)^(1 - x_d) on {0, 1}^D, p = f[z]: binarized images; params: [p]."""

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        p = np.clip(params[0].astype(np.float64), PROB_EPS, 1 - PROB_EPS)
        x64 = x.astype(np.float64)
        return np.sum(x64 * np.log(p) + (1 - x64) * np.log1p(-p), axis=image_axes(p))

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        return params[0]

    def mean_work(self, params: list[np.ndarray]) -> int:
        return 0  # the mean is a parameter

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        return (rng.random(params[0].shape) < params[0]).astype(np.float32)

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        p = np.clip(params[0].astype(np.float64), PROB_EPS, 1 - PROB_EPS)
        return p, p * (1 - p)


@dataclass(frozen=True)
class PixelGaussianLikelihood:
    """prod_d Norm[x_d; mean_d, e^logvar_d]: a mean and a variance per pixel; params: [mean, logvar]."""

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        mean, logvar = (p.astype(np.float64) for p in params)
        density = -0.5 * (LOG_2PI + logvar + (x.astype(np.float64) - mean) ** 2 * np.exp(-logvar))
        return np.sum(density, axis=image_axes(mean))

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        return params[0]

    def mean_work(self, params: list[np.ndarray]) -> int:
        return 0  # the mean is a parameter

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        mean, logvar = params
        return (mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape)).astype(np.float32)

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean, logvar = (p.astype(np.float64) for p in params)
        return mean, np.exp(logvar)


def logistic_moments(loc: np.ndarray, log_scale: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """The location clipped to [0, 1] and 3 s^2 + 1 / (12 (L - 1)^2): a discretized logistic's `moments`."""
    return np.clip(loc, 0.0, 1.0), 3.0 * np.exp(2.0 * log_scale) + 1.0 / (12.0 * (levels - 1) ** 2)


def softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def discretized_logistic_log_mass(x: np.ndarray, loc: np.ndarray, log_scale: np.ndarray, levels: int
                                  ) -> np.ndarray:
    """log P(k) per element of a logistic(loc, e^log_scale) discretized to x = k / (L - 1) (LikelihoodSpec): with
    a, b the standardized bin edges, log(sigmoid(b) - sigmoid(a)) = b + log(1 - e^(a - b)) - softplus(a)
    - softplus(b); bin 0 is log sigmoid(b), bin L - 1 log(1 - sigmoid(a)). As training/likelihoods.py."""
    half = 0.5 / (levels - 1)
    inv_scale = np.exp(-log_scale)
    a, b = (x - loc - half) * inv_scale, (x - loc + half) * inv_scale
    inner = b + np.log(-np.expm1(a - b)) - softplus(a) - softplus(b)
    k = np.round(x * (levels - 1))
    return np.where(k <= 0, -softplus(-b), np.where(k >= levels - 1, -softplus(a), inner))


EDGE_BLOCK = 16  # bin edges per pass of discretized_logistic_mean: its memory is this many times the parameters'


def discretized_logistic_mean(loc: np.ndarray, log_scale: np.ndarray, levels: int) -> np.ndarray:
    """sum_k k / (L - 1) P(k) = 1 - mean_j sigmoid((e_j - loc) / s) over the L - 1 inner bin edges
    e_j = (j - 1/2) / (L - 1) (summation by parts); the edges in blocks, so memory stays a few times the
    parameters' (work: (L - 1) times their size, `mean_work`)."""
    loc64, inv_scale = loc.astype(np.float64)[..., None], np.exp(-log_scale.astype(np.float64))[..., None]
    edges = (np.arange(1, levels) - 0.5) / (levels - 1)
    total = np.zeros(loc.shape)
    for start in range(0, len(edges), EDGE_BLOCK):
        t = (edges[start : start + EDGE_BLOCK] - loc64) * inv_scale
        total += np.sum(0.5 * (1.0 + np.tanh(0.5 * t)), axis=-1)  # sigmoid, overflow-free
    return (1.0 - total / len(edges)).astype(np.float32)


def discretized_logistic_sample(loc: np.ndarray, log_scale: np.ndarray, levels: int, u: np.ndarray) -> np.ndarray:
    """y = loc + s logit(u) rounded to the nearest level and clamped: a draw of the discretized distribution."""
    u = np.clip(u, 1e-6, 1 - 1e-6)
    y = loc + np.exp(log_scale) * (np.log(u) - np.log1p(-u))
    return (np.clip(np.round(y * (levels - 1)), 0, levels - 1) / (levels - 1)).astype(np.float32)


@dataclass(frozen=True)
class LogisticLikelihood:
    """A logistic per pixel discretized to the L levels; params: [loc, log_scale]."""

    levels: int

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        loc, log_scale = (p.astype(np.float64) for p in params)
        mass = discretized_logistic_log_mass(x.astype(np.float64), loc, log_scale, self.levels)
        return np.sum(mass, axis=image_axes(loc))

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        return discretized_logistic_mean(params[0], params[1], self.levels)

    def mean_work(self, params: list[np.ndarray]) -> int:
        return params[0].size * (self.levels - 1)

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        loc, log_scale = params
        return discretized_logistic_sample(loc, log_scale, self.levels, rng.random(loc.shape))

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return logistic_moments(params[0].astype(np.float64), params[1].astype(np.float64), self.levels)


@dataclass(frozen=True)
class LogisticMixtureLikelihood:
    """A mixture of K discretized logistics per pixel; params: [logits, loc, log_scale], each (..., N, K, C, H, W)."""

    levels: int

    def log_prob(self, x: np.ndarray, params: list[np.ndarray]) -> np.ndarray:
        logits, loc, log_scale = (p.astype(np.float64) for p in params)
        log_weights = logits - logsumexp(logits, axis=-4, keepdims=True)  # log softmax over K
        mass = discretized_logistic_log_mass(x.astype(np.float64)[:, None], loc, log_scale, self.levels)
        per_pixel = logsumexp(log_weights + mass, axis=-4)  # (..., N, C, H, W)
        return np.sum(per_pixel, axis=image_axes(per_pixel))

    def mean(self, params: list[np.ndarray]) -> np.ndarray:
        logits, loc, log_scale = params
        weights = np.exp(logits - logsumexp(logits.astype(np.float64), axis=-4, keepdims=True))
        return np.sum(weights * discretized_logistic_mean(loc, log_scale, self.levels), axis=-4).astype(np.float32)

    def mean_work(self, params: list[np.ndarray]) -> int:
        return params[1].size * (self.levels - 1)  # every component's

    def sample(self, params: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """A component per pixel by the Gumbel-max trick, then a draw of that logistic."""
        logits, loc, log_scale = params
        gumbel = -np.log(-np.log(np.clip(rng.random(logits.shape), 1e-9, 1 - 1e-9)))
        pick = np.argmax(logits + gumbel, axis=-4)[..., None, :, :, :]  # (..., N, 1, C, H, W)
        chosen = [np.take_along_axis(p, pick, axis=-4)[..., 0, :, :, :] for p in (loc, log_scale)]
        return discretized_logistic_sample(chosen[0], chosen[1], self.levels, rng.random(chosen[0].shape))

    def moments(self, params: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's: sum_k pi_k m_k and sum_k pi_k (v_k + m_k^2) - m^2 over the components' moments."""
        logits, loc, log_scale = (p.astype(np.float64) for p in params)
        weights = np.exp(logits - logsumexp(logits, axis=-4, keepdims=True))
        m, v = logistic_moments(loc, log_scale, self.levels)
        mean = np.sum(weights * m, axis=-4)
        return mean, np.sum(weights * (v + m**2), axis=-4) - mean**2


def logsumexp(a: np.ndarray, axis: int = 0, keepdims: bool = False) -> np.ndarray:
    """log sum exp(a) over `axis`, shifted by the maximum (all -inf gives -inf, not NaN)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis)


def likelihood_of(spec: LikelihoodSpec, levels: int) -> Likelihood:
    """The manifest's likelihood as an object; `levels`: the image's L (what a discretized one is over)."""
    if spec.type == "gaussian":
        if spec.sigma is None:
            raise ValueError("a gaussian likelihood needs its sigma in the manifest")
        return GaussianLikelihood(spec.sigma)
    if spec.type == "pixel-gaussian":
        return PixelGaussianLikelihood()
    if spec.type == "logistic":
        return LogisticLikelihood(levels)
    if spec.type == "logistic-mixture":
        return LogisticMixtureLikelihood(levels)
    return BernoulliLikelihood()
