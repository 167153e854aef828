"""The importance-sampled log-likelihood in numpy, over the exported graphs (no torch).

log Pr(x) ~ logsumexp_k(log Pr(x|z_k) + log Pr(z_k) - log q(z_k|x)) - log K,  z_k ~ q(z|x) = Norm[mu, diag var]
(Prince ch. 17, "Approximating sample probability"). Log-weights and the logsumexp are float64; the
decoder runs float32 in chunks of `chunk` samples, so memory stays bounded for any K. The noise follows the
contract of training/estimators.py: eps = numpy.random.default_rng(seed).standard_normal((K, N, D)) in
K-major order, so for the same images, K and seed both packages give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.manifest import ImageSpec, LikelihoodSpec

LOG_2PI = math.log(2 * math.pi)
# Bernoulli probabilities come out of the graph after the sigmoid; clip so log(0) never happens.
PROB_EPS = 1e-12


@dataclass
class LogLikelihood:
    log_likelihood: np.ndarray  # (N,) nats
    elbo: np.ndarray  # (N,) mean log-weight over the K draws: a K-sample estimate of the ELBO
    effective_sample_size: np.ndarray  # (N,) (sum w)^2 / sum w^2
    k: int


def logsumexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def log_px_given_z(x: np.ndarray, mean: np.ndarray, lik: LikelihoodSpec) -> np.ndarray:
    """log Pr(x|z) per image, float64: x (N, C, H, W), mean (M, N, C, H, W) -> (M, N)."""
    x64, m64 = x.astype(np.float64), mean.astype(np.float64)
    axes = tuple(range(2, m64.ndim))
    if lik.type == "gaussian":
        sigma = float(lik.sigma or 1.0)
        d = math.prod(x.shape[1:])
        sq = np.sum((x64 - m64) ** 2, axis=axes)
        return -0.5 * sq / sigma**2 - d * (math.log(sigma) + 0.5 * LOG_2PI)
    p = np.clip(m64, PROB_EPS, 1 - PROB_EPS)
    return np.sum(x64 * np.log(p) + (1 - x64) * np.log1p(-p), axis=axes)


def log_likelihood(x: np.ndarray, mu: np.ndarray, logvar: np.ndarray, decode: Callable[[np.ndarray], np.ndarray],
                   lik: LikelihoodSpec, k: int, seed: int | None, chunk: int = 256) -> LogLikelihood:
    """x (N, C, H, W) float32, q's mu and logvar (N, D); decode maps z (M, D) float32 -> mean (M, C, H, W)."""
    rng = np.random.default_rng(seed)
    mu64, logvar64 = mu.astype(np.float64), logvar.astype(np.float64)
    std = np.exp(0.5 * logvar64)
    n, d = mu.shape
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = rng.standard_normal((kc, n, d))  # (kc, N, D) float64
        z = mu64 + std * eps
        mean = decode(z.reshape(kc * n, d).astype(np.float32)).reshape(kc, n, *x.shape[1:])
        log_prior = -0.5 * np.sum(z**2 + LOG_2PI, axis=-1)
        log_q = -0.5 * np.sum(LOG_2PI + logvar64 + eps**2, axis=-1)  # (z - mu)^2 / var = eps^2
        rows.append(log_px_given_z(x, mean, lik) + log_prior - log_q)
    lw = np.concatenate(rows, axis=0)  # (K, N)
    lse = logsumexp(lw, 0)
    ess = np.exp(2 * lse - logsumexp(2 * lw, 0))
    return LogLikelihood(lse - math.log(k), lw.mean(0), ess, k)


def bits_per_dim(log_px: np.ndarray, image: ImageSpec) -> np.ndarray | None:
    """The project's convention (manifest.BITS_PER_DIM_CONVENTION); None where undefined."""
    d = image.num_dims
    if image.pixel_mode == "dequantize":
        return -(log_px - d * math.log(image.levels)) / (d * math.log(2))
    if image.pixel_mode == "binarize":
        return -log_px / (d * math.log(2))
    return None


def log_likelihood_two_level(x: np.ndarray, q1: tuple[np.ndarray, np.ndarray], q2: tuple[np.ndarray, np.ndarray],
                             prior: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                             decode: Callable[[np.ndarray], np.ndarray], lik: LikelihoodSpec, k: int,
                             seed: int | None, chunk: int = 256) -> LogLikelihood:
    """The two-level model z2 -> z1 -> x, proposal q(z1|x) q(z2|x):
    log w = log Pr(x|z1) + log Pr(z1|z2) + log Pr(z2) - log q(z1|x) - log q(z2|x).
    eps = default_rng(seed).standard_normal((K, N, D1 + D2)): columns :D1 drive z1, the rest z2 (the same
    contract as training/estimators.py). prior maps z2 (M, D2) float32 -> mean, logvar (M, D1) of Pr(z1|z2)."""
    rng = np.random.default_rng(seed)
    (mu1, lv1), (mu2, lv2) = ((m.astype(np.float64), v.astype(np.float64)) for m, v in (q1, q2))
    n, d1 = mu1.shape
    d2 = mu2.shape[1]
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = rng.standard_normal((kc, n, d1 + d2))
        e1, e2 = eps[..., :d1], eps[..., d1:]
        z1 = mu1 + np.exp(0.5 * lv1) * e1
        z2 = mu2 + np.exp(0.5 * lv2) * e2
        pm, plv = prior(z2.reshape(kc * n, d2).astype(np.float32))
        pm, plv = pm.astype(np.float64).reshape(kc, n, d1), plv.astype(np.float64).reshape(kc, n, d1)
        mean = decode(z1.reshape(kc * n, d1).astype(np.float32)).reshape(kc, n, *x.shape[1:])
        log_p_z1 = -0.5 * np.sum(LOG_2PI + plv + (z1 - pm) ** 2 * np.exp(-plv), axis=-1)
        log_p_z2 = -0.5 * np.sum(z2**2 + LOG_2PI, axis=-1)
        log_q = (-0.5 * np.sum(LOG_2PI + lv1 + e1**2, axis=-1)) + (-0.5 * np.sum(LOG_2PI + lv2 + e2**2, axis=-1))
        rows.append(log_px_given_z(x, mean, lik) + log_p_z1 + log_p_z2 - log_q)
    lw = np.concatenate(rows, axis=0)
    lse = logsumexp(lw, 0)
    return LogLikelihood(lse - math.log(k), lw.mean(0), np.exp(2 * lse - logsumexp(2 * lw, 0)), k)
