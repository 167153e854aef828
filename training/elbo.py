"""The training objective: ELBO = E_q[log Pr(x|z)] - KL[q(z|x) || Pr(z)] (Prince ch. 17), per image.

One reparameterized sample z = mu + sigma_z * eps estimates the expectation; the KL is closed form.
A beta weight on the KL gives the beta-VAE (beta = 1: the plain VAE); the returned `elbo` is always
the true bound (beta = 1), `objective` the weighted one that training maximises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.latent import LatentModel


@dataclass
class ElboParts:
    """Per-image values in nats, each (N,); `num_dims` = C*H*W turns them into per-dimension values."""

    reconstruction: torch.Tensor  # one-sample estimate of E_q[log Pr(x|z)]
    kl: torch.Tensor  # KL[q(z|x) || Pr(z)], closed form (summed over the levels)
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


def elbo(model: LatentModel, x: torch.Tensor, beta: float = 1.0, generator: torch.Generator | None = None
         ) -> ElboParts:
    """One-sample ELBO of images x (N, C, H, W): one reparameterized draw per latent level (z1 first), the
    reconstruction term log Pr(x|z1) at it, and each level's KL in closed form given the draws above it."""
    q = model.encode(x)
    z = [q_l.rsample(generator) for q_l in q]  # (N, D_l) each
    reconstruction = model.decode(z[0]).log_prob(x)
    kl = model.kl(q, z)
    return ElboParts(reconstruction=reconstruction, kl=kl, elbo=reconstruction - kl,
                     objective=reconstruction - beta * kl, num_dims=x[0].numel())
