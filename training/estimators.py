"""Importance-sampled log-likelihood.

log Pr(x) = log E_{z~r(z|x)}[Pr(x|z) Pr(z) / r(z|x)]
          ~ logsumexp_k(log Pr(x|z_k) + log Pr(z_k) - log r(z_k|x)) - log K,   z_k ~ r(z|x)
(Prince ch. 17, "Approximating sample probability"; Burda et al. 2016). Consistent as K grows; its
expectation is a lower bound that tightens with K. The proposal r is a Laplace approximation of each image's
posterior found from the encoder's q(z|x) by Gauss-Newton, or q itself where K is too small to pay for the fit
(service/laplace.py, shared with the service's estimator). Every log-weight and the logsumexp are formed in
float64; the decoder passes run in chunks so memory stays bounded for any K.

The noise is part of the contract with the service: eps = numpy.random.default_rng(seed)
.standard_normal((rows, D1 + D2 + ...)) in float64, drawn in K-major order (chunking does not change it), the
same rows for every image (first the ELBO's draws from q, then the final ones from r), and z_k = m + L eps_k
over the levels' concatenation, m and L each image's proposal's. An image's estimate so depends on its pixels,
K and the seed only, never on the other images of its batch. The service's numpy estimator draws the same
numbers, so for the same images, K and seed the two agree to float rounding.

The standard error of one estimate, sqrt(1 / ESS - 1 / K) over its K final draws, is the delta method's
sd(w) / (sqrt(K) mean(w)).

Bits per dimension of these estimates: `service.manifest.bits_per_dim`, the convention both wings share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from service.laplace import GaussianProposal, Schedule, Terms, fit
from training.latent import LatentModel


@dataclass
class LogLikelihood:
    log_likelihood: torch.Tensor  # (N,) float64, nats
    log_weights: torch.Tensor  # (final, N) float64: the draws from the proposal (service/laplace.py)
    elbo: torch.Tensor  # (N,) float64, mean log-weight of the draws from q(z|x)
    k: int  # the draws asked for, `final` of them the estimate's

    @property
    def final(self) -> int:
        return self.log_weights.shape[0]

    @property
    def effective_sample_size(self) -> torch.Tensor:
        """(sum w)^2 / sum w^2 per image of the final draws, in log space: `final` for perfect weights, 1 for
        degenerate."""
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))

    @property
    def stderr(self) -> torch.Tensor:
        """(N,) standard error of each log_likelihood: sd(w) / (sqrt(final) mean(w)) = sqrt(1 / ESS - 1 / final)."""
        return (1.0 / self.effective_sample_size - 1.0 / self.final).clamp(min=0.0).sqrt()


@torch.no_grad()
def log_weights(model: LatentModel, x: torch.Tensor, proposal: GaussianProposal, k: int, chunk: int,
                rng: np.random.Generator) -> torch.Tensor:
    """log Pr(x|z1_k) + log Pr(z_k) - log r(z_k|x) of K draws per image from `proposal`, a Gaussian over all
    levels (N, D1 + D2 + ...): (K, N) float64. One eps row (D1 + D2 + ...) per draw from `rng`, shared by the N
    images; its first D1 columns drive z1, the next D2 z2, through each image's proposal."""
    dims = list(model.latent_dims)
    dtype = x.dtype  # the networks run in the model's dtype, the log-densities in float64
    x64 = x.to(torch.float64)
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = rng.standard_normal((kc, 1, sum(dims)))  # (kc, 1, sum D) float64, every image's
        z = torch.from_numpy(proposal.sample(eps))  # (kc, N, sum D)
        levels = list(z.split(dims, dim=-1))
        h = model.decode(levels[0].flatten(0, 1).to(dtype))  # over kc*N rows
        log_px_z = h.log_prob(x64.expand(kc, *x64.shape).flatten(0, 1)).view(kc, -1)  # float64
        log_r = torch.from_numpy(proposal.log_prob_of_noise(eps))
        rows.append(log_px_z + model.log_prior(levels) - log_r)
    return torch.cat(rows, 0)


def terms(model: LatentModel, x: torch.Tensor) -> Terms:
    """The log joint's Gaussian terms at probe points (service/laplace.py), as the service's estimator forms them:
    the pixels under Pr(x|z1) by the likelihood's moments, then each level under its prior."""
    dims, n = list(model.latent_dims), len(x)

    @torch.no_grad()
    def at(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        z = torch.from_numpy(points)  # (P, N, sum D) float64
        p = len(z)
        levels = list(z.split(dims, dim=-1))
        mean, variance = model.decode(levels[0].flatten(0, 1).to(x.dtype)).moments()  # (P*N, C, H, W)
        found = [(x.double().expand(p, *x.shape), mean, variance)]
        for zl, prior in zip(levels, model.priors(levels), strict=True):
            found.append((zl, *prior.moments(zl)))
        return [tuple(a.double().reshape(p, n, -1).numpy() for a in term) for term in found]  # type: ignore[misc]

    return at


@torch.no_grad()
def log_likelihood(model: LatentModel, x: torch.Tensor, k: int, chunk: int = 256,
                   rng: np.random.Generator | None = None) -> LogLikelihood:
    """Importance-sampled log Pr(x) for images x (N, C, H, W), K draws each, in float64: the proposal fitted to
    each image first (service/laplace.py), as the service's estimator does."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rng = rng if rng is not None else np.random.default_rng()
    q = [q_l.to(torch.float64) for q_l in model.encode(x)]
    q_mean = torch.cat([q_l.mu for q_l in q], -1).numpy()  # (N, D1 + D2 + ...)
    q_std = torch.cat([q_l.std for q_l in q], -1).numpy()
    encoder = GaussianProposal.diagonal(q_mean, q_std)
    schedule = Schedule.for_k(k, sum(model.latent_dims))
    if not schedule.iterations:
        lw = log_weights(model, x, encoder, k, chunk, rng)
        return LogLikelihood(torch.logsumexp(lw, 0) - math.log(k), lw, lw.mean(0), k)
    elbo = log_weights(model, x, encoder, schedule.elbo_draws, chunk, rng).mean(0)
    proposal = fit(terms(model, x), q_mean, q_std, schedule.iterations, chunk)
    lw = log_weights(model, x, proposal, schedule.final, chunk, rng)
    return LogLikelihood(torch.logsumexp(lw, 0) - math.log(schedule.final), lw, elbo, k)
