"""Importance-sampled log-likelihood.

log Pr(x) = log E_{z~q(z|x)}[Pr(x|z) Pr(z) / q(z|x)]
          ~ logsumexp_k(log Pr(x|z_k) + log Pr(z_k) - log q(z_k|x)) - log K,   z_k ~ q(z|x)
(Prince ch. 17, "Approximating sample probability"; Burda et al. 2016). Consistent as K grows; its
expectation is a lower bound that tightens with K. Every log-weight and the logsumexp are formed in
float64; the K decoder passes run in chunks so memory stays bounded for any K.

The noise is part of the contract with the service: eps = numpy.random.default_rng(seed)
.standard_normal((K, D1 + D2 + ...)) in float64, drawn in K-major order (chunking does not change it), the
same K rows for every image, and z_k = mu + exp(logvar / 2) * eps_k level by level. An image's estimate so
depends on its pixels, K and the seed only, never on the other images of its batch. The service's numpy
estimator draws the same numbers, so for the same images, K and seed the two agree to float rounding.

The standard error of one estimate, sqrt(1 / ESS - 1 / K), is the delta method's sd(w) / (sqrt(K) mean(w)).

Bits per dimension of these estimates: `service.manifest.bits_per_dim`, the convention both wings share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from training.latent import LatentModel, sum_levels


@dataclass
class LogLikelihood:
    log_likelihood: torch.Tensor  # (N,) float64, nats
    log_weights: torch.Tensor  # (K, N) float64
    k: int

    @property
    def effective_sample_size(self) -> torch.Tensor:
        """(sum w)^2 / sum w^2 per image, in log space: K for perfect weights, 1 for degenerate."""
        lw = self.log_weights
        return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))

    @property
    def stderr(self) -> torch.Tensor:
        """(N,) standard error of each log_likelihood: sd(w) / (sqrt(K) mean(w)) = sqrt(1 / ESS - 1 / K)."""
        return (1.0 / self.effective_sample_size - 1.0 / self.k).clamp(min=0.0).sqrt()


@torch.no_grad()
def log_weights(model: LatentModel, x: torch.Tensor, k: int, chunk: int = 256,
                rng: np.random.Generator | None = None) -> torch.Tensor:
    """log Pr(x|z1_k) + log Pr(z_k) - log q(z_k|x) for K draws of every level per image: (K, N) float64.
    One eps row (D1 + D2 + ...) per draw, shared by the N images; its first D1 columns drive z1, the next D2
    z2, ..."""
    rng = rng if rng is not None else np.random.default_rng()
    q = [q_l.to(torch.float64) for q_l in model.encode(x)]
    dims = list(model.latent_dims)
    dtype = x.dtype  # the networks run in the model's dtype, the log-densities in float64
    x64 = x.to(torch.float64)
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = torch.from_numpy(rng.standard_normal((kc, 1, sum(dims))))  # (kc, 1, sum D) float64, every image's
        z = [q_l.mu + q_l.std * e for q_l, e in zip(q, eps.split(dims, dim=-1), strict=True)]  # (kc, N, D_l)
        h = model.decode(z[0].flatten(0, 1).to(dtype))  # over kc*N rows
        log_px_z = h.log_prob(x64.expand(kc, *x64.shape).flatten(0, 1)).view(kc, -1)  # float64
        log_q = sum_levels([q_l.log_prob(z_l) for q_l, z_l in zip(q, z, strict=True)])
        rows.append(log_px_z + model.log_prior(z) - log_q)
    return torch.cat(rows, 0)


def log_likelihood(model: LatentModel, x: torch.Tensor, k: int, chunk: int = 256,
                   rng: np.random.Generator | None = None) -> LogLikelihood:
    """Importance-sampled log Pr(x) for images x (N, C, H, W), K samples each, in float64."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lw = log_weights(model, x, k, chunk, rng)
    return LogLikelihood(torch.logsumexp(lw, 0) - math.log(k), lw, k)
