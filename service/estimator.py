"""The importance-sampled log-likelihood in numpy, for every model kind (no torch).

    log Pr(x) ~ logsumexp_k log w_k - log K,   log w_k = log Pr(x|z_k) + log Pr(z_k) - log q(z_k|x),
    z_k ~ q(z|x)   (Prince ch. 17, "Approximating sample probability"; Burda et al. 2016)

with z = (z_1, ..., z_L) over the model's latent levels: log Pr(z) = sum_l log Pr(z_l | z_{l+1}) and
log q(z|x) = sum_l log q(z_l|x). A flat VAE is the case L = 1. The model supplies only its posterior,
priors, decoder and likelihood (service/model.py), so the estimator has no branch on its kind.

Every log-weight and the logsumexp are float64; the decoder runs float32 in chunks of `chunk` draws, so
memory stays bounded for any K. The noise is the contract with training/estimators.py: eps =
numpy.random.default_rng(seed).standard_normal((K, D_1 + ... + D_L)) in K-major order (chunking does not
change it), the same K rows for every image of the batch; its first D_1 columns drive level 1, the next D_2
level 2. An image's answer so depends on its pixels, K and the seed only: alone or at any place in any batch
it is the same. For the same images, K and seed both packages give the same numbers
(tests/service/test_estimator.py).

How far to trust one estimate: the effective sample size of its weights, and the standard error of log p-hat
by the delta method, sd(w) / (sqrt(K) mean(w)) = sqrt(1 / ESS - 1 / K), itself an estimate that is too small
when the weights' tail has not been sampled (a low ESS says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.distributions import DiagonalGaussian, Likelihood, logsumexp


class LatentModel(Protocol):
    likelihood: Likelihood

    def posterior(self, x: np.ndarray) -> list[DiagonalGaussian]: ...

    def priors(self, z: list[np.ndarray]) -> list[DiagonalGaussian]: ...

    def decode(self, z1: np.ndarray) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class LogLikelihood:
    log_likelihood: np.ndarray  # (N,) nats
    elbo: np.ndarray  # (N,) mean log-weight over the K draws: a K-sample estimate of the ELBO
    effective_sample_size: np.ndarray  # (N,) (sum w)^2 / sum w^2: K for perfect weights, 1 for degenerate
    k: int

    @property
    def stderr(self) -> np.ndarray:
        """(N,) delta-method standard error of log_likelihood: sqrt(1 / ESS - 1 / K) (0 for equal weights)."""
        return standard_error(self.effective_sample_size, self.k)


def standard_error(effective_sample_size: np.ndarray, k: int) -> np.ndarray:
    """sd(w) / (sqrt(K) mean(w)) of K importance weights from their ESS = K mean(w)^2 / mean(w^2)."""
    return np.sqrt(np.maximum(1.0 / effective_sample_size - 1.0 / k, 0.0))


class Stopped(Exception):
    """The caller asked the estimate to stop (its client went away): the remaining chunks are not computed."""


def log_weights(model: LatentModel, x: np.ndarray, k: int, seed: int | None, chunk: int,
                stop: Callable[[], bool] | None = None) -> np.ndarray:
    """log w for K draws per image x (N, C, H, W): (K, N) float64. `stop()` is asked before each chunk."""
    q = [level.astype(np.float64) for level in model.posterior(x)]  # q(z_l|x), each (N, D_l)
    n = len(x)
    dims = [level.mean.shape[1] for level in q]
    rng = np.random.default_rng(seed)
    rows = []
    for start in range(0, k, chunk):
        if stop is not None and stop():
            raise Stopped(f"stopped after {start} of {k} draws")
        kc = min(chunk, k - start)
        # (kc, 1, sum D): the same draws for every image, so none depends on the others of its batch
        eps = np.split(rng.standard_normal((kc, 1, sum(dims))), np.cumsum(dims)[:-1], axis=-1)
        z = [level.sample(e) for level, e in zip(q, eps, strict=True)]  # each (kc, N, D_l)
        flat = [zl.reshape(kc * n, -1) for zl in z]
        params = [p.reshape(kc, n, *p.shape[1:]) for p in model.decode(flat[0])]  # each (kc, N, ...)
        log_w = model.likelihood.log_prob(x, params)
        for zl, prior, posterior in zip(z, model.priors(flat), q, strict=True):
            log_w = log_w + prior.astype(np.float64).log_prob(zl.reshape(kc * n, -1)).reshape(kc, n)
            log_w = log_w - posterior.log_prob(zl)
        rows.append(log_w)
    return np.concatenate(rows, axis=0)


def log_likelihood(model: LatentModel, x: np.ndarray, k: int, seed: int | None, chunk: int = 256,
                   stop: Callable[[], bool] | None = None) -> LogLikelihood:
    """Importance-sampled log Pr(x) per image, with the ELBO and the effective sample size of the weights."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lw = log_weights(model, x, k, seed, chunk, stop)
    lse = logsumexp(lw, 0)
    return LogLikelihood(lse - math.log(k), lw.mean(0), np.exp(2 * lse - logsumexp(2 * lw, 0)), k)
