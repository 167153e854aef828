"""The training objective: ELBO = E_q[log Pr(x|z)] - KL[q(z|x) || Pr(z)] (Prince ch. 17), per image.

One reparameterized sample z = mu + sigma_z * eps estimates the expectation; the KL is closed form.
A beta weight on the KL gives the beta-VAE (beta = 1: the plain VAE); the returned `elbo` is always
the true bound (beta = 1), `objective` the weighted one that training maximises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.distributions import DiagonalGaussian
from training.hierarchical import TwoLevelVAE
from training.models import VAE


@dataclass
class ElboParts:
    """Per-image values in nats, each (N,); `num_dims` = C*H*W turns them into per-dimension values."""

    reconstruction: torch.Tensor  # one-sample estimate of E_q[log Pr(x|z)]
    kl: torch.Tensor  # KL[q(z|x) || Norm(0, I)], closed form
    elbo: torch.Tensor  # reconstruction - kl
    objective: torch.Tensor  # reconstruction - beta * kl
    num_dims: int

    @property
    def loss(self) -> torch.Tensor:
        """Scalar to minimise: minus the mean weighted objective."""
        return -self.objective.mean()

    def summary(self) -> dict[str, float]:
        """Batch means, per image and per dimension (nats)."""
        d = self.num_dims
        rec, kl, elbo = (float(t.mean()) for t in (self.reconstruction, self.kl, self.elbo))
        return {
            "elbo": elbo, "reconstruction": rec, "kl": kl,
            "elbo_per_dim": elbo / d, "reconstruction_per_dim": rec / d, "kl_per_dim": kl / d,
        }


def elbo_from_parts(log_px_given_z: torch.Tensor, q: DiagonalGaussian, beta: float = 1.0) -> ElboParts:
    """Pure: the ELBO's pieces from log Pr(x|z) (N,) at one z ~ q and q's parameters (N, D)."""
    kl = q.kl()
    return ElboParts(
        reconstruction=log_px_given_z,
        kl=kl,
        elbo=log_px_given_z - kl,
        objective=log_px_given_z - beta * kl,
        num_dims=0,
    )


def elbo(
    model: VAE | TwoLevelVAE, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None
) -> ElboParts:
    """One-sample ELBO of images x (N, C, H, W) under `model` (flat or two-level)."""
    if isinstance(model, TwoLevelVAE):
        return elbo_two_level(model, x, beta, generator)
    q = model.encode(x)
    z = q.rsample(generator)  # (N, D)
    parts = elbo_from_parts(model.likelihood.log_prob(x, model.decode_logits(z)), q, beta)
    parts.num_dims = x[0].numel()
    return parts


def elbo_two_level(model: TwoLevelVAE, x: torch.Tensor, beta: float = 1.0,
                   generator: torch.Generator | None = None) -> ElboParts:
    """ELBO of the two-level model (training/hierarchical.py): one draw of (z1, z2), KLs in closed form."""
    q1, q2 = model.encode_levels(x)
    z1, z2 = q1.rsample(generator), q2.rsample(generator)
    rec = model.likelihood.log_prob(x, model.decode_logits(z1))
    kl = model.kl_terms(q1, q2, z2)
    return ElboParts(reconstruction=rec, kl=kl, elbo=rec - kl, objective=rec - beta * kl, num_dims=x[0].numel())
