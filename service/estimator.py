"""The importance-sampled log-likelihood in numpy, for every model kind (no torch).

    log Pr(x) ~ logsumexp_k log w_k - log K,   log w_k = log Pr(x|z_k) + log Pr(z_k) - log r(z_k|x),
    z_k ~ r(z|x)   (Prince ch. 17, "Approximating sample probability"; Burda et al. 2016)

with z = (z_1, ..., z_L) over the model's latent levels: log Pr(z) = sum_l log Pr(z_l | z_{l+1}). A flat VAE
is the case L = 1. The model supplies only its posterior, priors, decoder and likelihood (service/model.py),
so the estimator has no branch on its kind. The proposal r is a Laplace approximation of each image's
posterior found from the encoder's q(z|x) by Gauss-Newton (service/laplace.py: its budget, why and how), or q
itself where K is too small to pay for the fit; the estimate, its ESS and standard error come from the draws
from r, the ELBO from draws from q.

Every log-weight and the logsumexp are float64; the decoder runs float32 in chunks of `chunk` draws, so
memory stays bounded for any K. The noise is the contract with training/estimators.py: eps =
numpy.random.default_rng(seed).standard_normal((K, D_1 + ... + D_L)) in K-major order (chunking does not
change it), the same rows for every image of the batch: first the ELBO's draws from q, then the final draws from
r (the fit's probe points are not random); a row's first D_1 columns drive level 1, the next D_2 level 2
through each image's proposal. An image's answer so depends on its pixels, K and
the seed only: alone or at any place in any batch it is the same. For the same images, K and seed both
packages give the same numbers (tests/service/test_estimator.py).

How far to trust one estimate: the effective sample size of its final weights, and the standard error of
log p-hat by the delta method, sd(w) / (sqrt(K) mean(w)) = sqrt(1 / ESS - 1 / K) over those K draws, itself
an estimate that is too small when the weights' tail has not been sampled (a low ESS says so).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.distributions import DiagonalGaussian, Likelihood, logsumexp
from service.laplace import GaussianProposal, Schedule, Terms, fit


class LatentModel(Protocol):
    likelihood: Likelihood

    def posterior(self, x: np.ndarray) -> list[DiagonalGaussian]: ...

    def priors(self, z: list[np.ndarray]) -> list[DiagonalGaussian]: ...

    def decode(self, z1: np.ndarray) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class LogLikelihood:
    log_likelihood: np.ndarray  # (N,) nats
    elbo: np.ndarray  # (N,) mean log-weight of the draws from q(z|x): an estimate of the ELBO
    effective_sample_size: np.ndarray  # (N,) (sum w)^2 / sum w^2 of the final draws: `final` for perfect weights
    k: int  # the draws asked for
    final: int  # of them, the final ones the estimate is made of (all K when there were no rounds)

    @property
    def stderr(self) -> np.ndarray:
        """(N,) delta-method standard error of log_likelihood: sqrt(1 / ESS - 1 / final) (0 for equal weights)."""
        return standard_error(self.effective_sample_size, self.final)


def standard_error(effective_sample_size: np.ndarray, k: int) -> np.ndarray:
    """sd(w) / (sqrt(K) mean(w)) of K importance weights from their ESS = K mean(w)^2 / mean(w^2)."""
    return np.sqrt(np.maximum(1.0 / effective_sample_size - 1.0 / k, 0.0))


class Stopped(Exception):
    """The caller asked the estimate to stop (its client went away): the remaining chunks are not computed."""


def log_weights(model: LatentModel, x: np.ndarray, proposal: GaussianProposal, dims: list[int],
                eps: Callable[[int], np.ndarray], k: int, chunk: int, stop: Callable[[], bool] | None = None
                ) -> np.ndarray:
    """log w (K, N) float64 of K draws per image x (N, C, H, W) from `proposal`, a Gaussian over all levels
    (N, D1 + D2 + ...). `eps(kc)` gives the next kc rows of the noise stream; `stop()` is asked before each
    chunk."""
    n = len(x)
    rows = []
    for start in range(0, k, chunk):
        if stop is not None and stop():
            raise Stopped(f"stopped after {start} of {k} draws")
        kc = min(chunk, k - start)
        noise = eps(kc)  # (kc, 1, sum D): the same rows for every image of the batch
        z = proposal.sample(noise)  # (kc, N, sum D)
        levels = [zl.reshape(kc * n, -1) for zl in np.split(z, np.cumsum(dims)[:-1], axis=-1)]
        params = [p.reshape(kc, n, *p.shape[1:]) for p in model.decode(levels[0])]  # each (kc, N, ...)
        log_w = model.likelihood.log_prob(x, params) - proposal.log_prob_of_noise(noise)
        for zl, prior in zip(levels, model.priors(levels), strict=True):
            log_w = log_w + prior.astype(np.float64).log_prob(zl).reshape(kc, n)
        rows.append(log_w)
    return np.concatenate(rows, axis=0)


def terms(model: LatentModel, x: np.ndarray, dims: list[int], stop: Callable[[], bool] | None) -> Terms:
    """The log joint's Gaussian terms at probe points (service/laplace.py): the pixels under Pr(x|z1), then each
    level under its prior."""
    n = len(x)

    def at(z: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:  # z (P, N, sum D)
        if stop is not None and stop():
            raise Stopped("stopped while fitting the proposal")
        p = len(z)
        levels = [zl.reshape(p * n, -1) for zl in np.split(z, np.cumsum(dims)[:-1], axis=-1)]
        params = [a.reshape(p, n, *a.shape[1:]) for a in model.decode(levels[0])]
        mean, variance = model.likelihood.moments(params)  # (P, N, C, H, W)
        found = [(np.broadcast_to(x, mean.shape), mean, variance)]
        for zl, prior in zip(levels, model.priors(levels), strict=True):
            prior = prior.astype(np.float64)
            found.append((zl, prior.mean, np.exp(prior.logvar)))
        return found

    return at


def log_likelihood(model: LatentModel, x: np.ndarray, k: int, seed: int | None, chunk: int = 256,
                   stop: Callable[[], bool] | None = None) -> LogLikelihood:
    """Importance-sampled log Pr(x) per image, with the ELBO and the effective sample size of the weights; the
    proposal fitted to each image first (service/laplace.py), the encoder's q(z|x) where K is too small."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q = [level.astype(np.float64) for level in model.posterior(x)]  # q(z_l|x), each (N, D_l)
    dims = [level.mean.shape[1] for level in q]
    rng = np.random.default_rng(seed)

    def eps(kc: int) -> np.ndarray:
        return rng.standard_normal((kc, 1, sum(dims)))  # K-major rows: the ELBO's draws first, then the final ones

    q_mean, q_std = np.concatenate([level.mean for level in q], -1), np.concatenate([level.std for level in q], -1)
    encoder = GaussianProposal.diagonal(q_mean, q_std)
    schedule = Schedule.for_k(k, sum(dims))
    if not schedule.iterations:
        lw = log_weights(model, x, encoder, dims, eps, k, chunk, stop)
        return estimate(lw, lw.mean(0), k)
    elbo = log_weights(model, x, encoder, dims, eps, schedule.elbo_draws, chunk, stop).mean(0)
    proposal = fit(terms(model, x, dims, stop), q_mean, q_std, schedule.iterations, chunk)
    return estimate(log_weights(model, x, proposal, dims, eps, schedule.final, chunk, stop), elbo, k)


def estimate(lw: np.ndarray, elbo: np.ndarray, k: int) -> LogLikelihood:
    """From the final draws' log-weights (final, N)."""
    lse = logsumexp(lw, 0)
    return LogLikelihood(lse - math.log(len(lw)), elbo, np.exp(2 * lse - logsumexp(2 * lw, 0)), k, len(lw))
