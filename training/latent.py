"""The one interface of every latent-variable model here (the flat VAE, training/models.py; the two-level VAE,
training/hierarchical.py): a list of latent levels, each with a posterior and a prior as distribution objects,
and a decoder giving a likelihood object. The ELBO (training/elbo.py), the importance-sampled log-likelihood
(training/estimators.py), the export and the figures are written once against it.

Levels are numbered from the one the decoder reads: z[0] = z1 (D1), z[1] = z2 (D2), ...; the top level's
prior is Norm[0, I] and each lower level's is conditional on the draw above it, Pr(z_l | z_{l+1}).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from training.distributions import DiagonalGaussian, StandardNormal
from training.likelihoods import Likelihood, PixelDistribution
from training.networks import ImageShape

Prior = DiagonalGaussian | StandardNormal


class LatentModel(nn.Module, ABC):
    latent_dims: tuple[int, ...]  # (D1,) or (D1, D2, ...): the size of each level, the decoder's first
    likelihood: Likelihood
    shape: ImageShape

    @abstractmethod
    def encode(self, x: torch.Tensor) -> list[DiagonalGaussian]:
        """q(z_l|x) of each level for images x (N, C, H, W) in [0, 1]: one (N, D_l) Gaussian per level."""

    @abstractmethod
    def decode(self, z: torch.Tensor) -> PixelDistribution:
        """Pr(x|z1) for z1 (N, D1): the likelihood object (its mean() is f[z, phi])."""

    def prior(self, level: int, above: torch.Tensor | None = None) -> Prior:
        """Pr(z_level | z_{level+1} = above); the top level's is Norm[0, I] (above None). A model with a learned
        conditional prior overrides this for its lower levels, in the dtype of `above`."""
        return StandardNormal(self.latent_dims[level])

    # --- built from the above, the same for every model --------------------------------------------------

    @property
    def latent_dim(self) -> int:
        """D1: the size of the latent the decoder reads (and the service's /decode takes)."""
        return self.latent_dims[0]

    def priors(self, z: list[torch.Tensor]) -> list[Prior]:
        """Each level's prior given the draws of the levels above it (z: one draw per level)."""
        return [self.prior(level, z[level + 1] if level + 1 < len(z) else None) for level in range(len(z))]

    def log_prior(self, z: list[torch.Tensor]) -> torch.Tensor:
        """log Pr(z1, z2, ...) = sum_l log Pr(z_l | z_{l+1}); each z_l (..., N, D_l) -> (..., N)."""
        return sum_levels([p.log_prob(z_l) for p, z_l in zip(self.priors(z), z, strict=True)])

    def kl(self, q: list[DiagonalGaussian], z: list[torch.Tensor]) -> torch.Tensor:
        """sum_l KL[q(z_l|x) || Pr(z_l | z_{l+1})] at the draws z of the levels above, each in closed form: (N,).
        One level: the chapter's KL[q(z|x) || Norm(0, I)]."""
        return sum_levels([q_l.kl(p) for q_l, p in zip(q, self.priors(z), strict=True)])

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Ancestral sampling from the prior, top level first: one (n, D_l) draw per level."""
        top = len(self.latent_dims) - 1
        z = [StandardNormal(self.latent_dims[top]).sample(n, generator)]
        for level in range(top - 1, -1, -1):
            prior = self.prior(level, z[0])
            assert isinstance(prior, DiagonalGaussian)  # below the top, priors are conditional
            z.insert(0, prior.rsample(generator))
        return z

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, noise: bool = False) -> torch.Tensor:
        """Images from the model: z ~ the prior, then the mean f[z1] (or x ~ Pr(x|z1) with noise=True)."""
        px = self.decode(self.sample_latents(n, generator)[0])
        return px.sample(generator) if noise else px.mean()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """f[mu1(x)]: the decoded posterior mean of the level the decoder reads."""
        return self.decode(self.encode(x)[0].mu).mean()


def sum_levels(terms: list[torch.Tensor]) -> torch.Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total
