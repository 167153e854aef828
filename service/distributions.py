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
    """Pr(x|z) given the decoder's output f[z] (its mean)."""

    def log_prob(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """x (N, C, H, W), mean (..., N, C, H, W) -> log Pr(x|z) (..., N), float64."""
        ...

    def sample(self, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One draw x ~ Pr(x|z) per mean: the chapter's generative process. float32, same shape."""
        ...


@dataclass(frozen=True)
class GaussianLikelihood:
    """Pr(x|z) = Norm[x; f[z], sigma^2 I] on R^D, the chapter's spherical Gaussian."""

    sigma: float

    def log_prob(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        # -D/2 log(2 pi sigma^2) - ||x - f[z]||^2 / (2 sigma^2): one squared distance per image
        d = math.prod(x.shape[1:])
        axes = tuple(range(mean.ndim - 3, mean.ndim))
        squared = np.sum((x.astype(np.float64) - mean.astype(np.float64)) ** 2, axis=axes)
        return -0.5 * squared / self.sigma**2 - d * (math.log(self.sigma) + 0.5 * LOG_2PI)

    def sample(self, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (mean + self.sigma * rng.standard_normal(mean.shape)).astype(np.float32)


@dataclass(frozen=True)
class BernoulliLikelihood:
    """Pr(x|z) = prod_d p_d^x_d (1 - p_d)^(1 - x_d) on {0, 1}^D, p = f[z]: binarized images."""

    def log_prob(self, x: np.ndarray, mean: np.ndarray) -> np.ndarray:
        p = np.clip(mean.astype(np.float64), PROB_EPS, 1 - PROB_EPS)
        x64 = x.astype(np.float64)
        axes = tuple(range(p.ndim - 3, p.ndim))
        return np.sum(x64 * np.log(p) + (1 - x64) * np.log1p(-p), axis=axes)

    def sample(self, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (rng.random(mean.shape) < mean).astype(np.float32)


def likelihood_of(spec: LikelihoodSpec) -> Likelihood:
    """The manifest's likelihood as an object."""
    if spec.type == "gaussian":
        if spec.sigma is None:
            raise ValueError("a gaussian likelihood needs its sigma in the manifest")
        return GaussianLikelihood(spec.sigma)
    return BernoulliLikelihood()
