"""Importance-sampled log-likelihood.

log Pr(x) = log E_{z~q(z|x)}[Pr(x|z) Pr(z) / q(z|x)]
          ~ logsumexp_k(log Pr(x|z_k) + log Pr(z_k) - log q(z_k|x)) - log K,   z_k ~ q(z|x)
(Prince ch. 17, "Approximating sample probability"; Burda et al. 2016). Consistent as K grows; its
expectation is a lower bound that tightens with K. Every log-weight and the logsumexp are formed in
float64; the K decoder passes run in chunks so memory stays bounded for any K.

The noise is part of the contract with the service: eps = numpy.random.default_rng(seed)
.standard_normal((K, N, D)) in float64, drawn in K-major order (chunking does not change it), and
z_k = mu + exp(logvar / 2) * eps_k. The service's numpy estimator draws the same numbers, so for the same
images, K and seed the two agree to float rounding.

Bits per dimension of these estimates: `service.manifest.bits_per_dim`, the convention both wings share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from training.distributions import standard_normal_log_density
from training.hierarchical import TwoLevelVAE
from training.models import VAE


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


@torch.no_grad()
def log_weights(model: VAE | TwoLevelVAE, x: torch.Tensor, k: int, chunk: int = 256,
                rng: np.random.Generator | None = None) -> torch.Tensor:
    """log Pr(x|z_k) + log Pr(z_k) - log q(z_k|x) for K draws per image: (K, N) float64."""
    rng = rng if rng is not None else np.random.default_rng()
    if isinstance(model, TwoLevelVAE):
        return _two_level_log_weights(model, x, k, chunk, rng)
    q64 = model.encode(x).to(torch.float64)
    x64 = x.to(torch.float64)
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = torch.from_numpy(rng.standard_normal((kc, *q64.mu.shape)))  # (kc, N, D) float64
        z = q64.mu + q64.std * eps
        h = model.decode_logits(z.flatten(0, 1).to(x.dtype))  # (kc*N, C, H, W), the model's dtype
        x_rep = x64.expand(kc, *x64.shape).flatten(0, 1)
        log_px_z = model.likelihood.log_prob(x_rep, h).view(kc, -1)  # float64
        rows.append(log_px_z + standard_normal_log_density(z).sum(-1) - q64.log_prob(z))
    return torch.cat(rows, 0)


def _two_level_log_weights(model: TwoLevelVAE, x: torch.Tensor, k: int, chunk: int,
                           rng: np.random.Generator) -> torch.Tensor:
    """The same for z = (z1, z2): eps (K, N, D1 + D2), its first D1 columns drive z1, the rest z2;
    log w = log Pr(x|z1) + log Pr(z1|z2) + log Pr(z2) - log q(z1|x) - log q(z2|x)."""
    q1, q2 = (q.to(torch.float64) for q in model.encode_levels(x))
    d1 = model.latent_dim
    x64 = x.to(torch.float64)
    rows = []
    for start in range(0, k, chunk):
        kc = min(chunk, k - start)
        eps = torch.from_numpy(rng.standard_normal((kc, x.shape[0], d1 + model.latent_dim2)))
        z1, z2 = q1.mu + q1.std * eps[..., :d1], q2.mu + q2.std * eps[..., d1:]
        rows.append(model.log_joint_minus_q(x64, q1, q2, z1, z2))
    return torch.cat(rows, 0)


def log_likelihood(model: VAE | TwoLevelVAE, x: torch.Tensor, k: int, chunk: int = 256,
                   rng: np.random.Generator | None = None) -> LogLikelihood:
    """Importance-sampled log Pr(x) for images x (N, C, H, W), K samples each, in float64."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lw = log_weights(model, x, k, chunk, rng)
    return LogLikelihood(torch.logsumexp(lw, 0) - math.log(k), lw, k)
