"""A two-level VAE with a learned conditional prior (z2 -> z1 -> x), for better samples (Prince ch. 17,
"hierarchical priors"; Sonderby et al. 2016, Vahdat & Kautz 2020 for deeper versions).

Generative model:  z2 ~ Norm[0, I_D2],  z1 | z2 ~ Norm[m(z2), diag s^2(z2)],  x | z1 ~ the likelihood of f[z1].
Inference model:   q(z1, z2 | x) = Norm[mu1(x), diag var1(x)] Norm[mu2(x), diag var2(x)]  (one encoder trunk).
ELBO = E_q[log Pr(x|z1)] - E_{q(z2|x)} KL[q(z1|x) || Pr(z1|z2)] - KL[q(z2|x) || Norm(0, I)]
with one reparameterized draw of (z1, z2) and both KLs in closed form given the draw of z2 (training/latent.py).

The decoder and likelihood are those of the flat VAE, so /decode takes z1.
"""

from __future__ import annotations

import torch

from training.config import ModelConfig
from training.distributions import DiagonalGaussian
from training.latent import LatentModel, Prior
from training.likelihoods import PixelDistribution, build_likelihood
from training.networks import ImageShape, build_networks, mlp


class TwoLevelVAE(LatentModel):
    def __init__(self, cfg: ModelConfig, shape: ImageShape, levels: int = 256):
        super().__init__()
        self.cfg, self.shape = cfg, shape
        d1, d2 = cfg.latent_dim, cfg.latent_dim2
        self.latent_dims = (d1, d2)
        likelihood = build_likelihood(cfg, levels)
        # one trunk -> (mu1, mu2, logvar1, logvar2)
        self.encoder, self.decoder = build_networks(cfg, shape, 2 * (d1 + d2), d1, likelihood.params_per_channel)
        self.prior_net = mlp([d2, *cfg.prior_hidden, 2 * d1])  # z2 -> (m, log s^2) of Pr(z1|z2)
        self.likelihood = likelihood

    def clamp(self, logvar: torch.Tensor) -> torch.Tensor:
        return logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max)

    def encode(self, x: torch.Tensor) -> list[DiagonalGaussian]:
        """[q(z1|x), q(z2|x)] for x (N, C, H, W)."""
        d1 = self.latent_dims[0]
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (N, D1 + D2) each
        return [DiagonalGaussian(mu[:, :d1], self.clamp(logvar[:, :d1])),
                DiagonalGaussian(mu[:, d1:], self.clamp(logvar[:, d1:]))]

    def prior(self, level: int, above: torch.Tensor | None = None) -> Prior:
        """Level 0: the learned Pr(z1|z2) at z2 = above (..., D2) -> Norm over (..., D1), in above's dtype (the
        network runs in its own). Level 1: Norm[0, I]."""
        if level == 1:
            return super().prior(level)
        assert above is not None, "Pr(z1|z2) needs z2"
        dtype = next(self.prior_net.parameters()).dtype
        m, logvar = self.prior_net(above.to(dtype)).chunk(2, dim=-1)
        return DiagonalGaussian(m.to(above.dtype), self.clamp(logvar).to(above.dtype))

    def decode(self, z: torch.Tensor) -> PixelDistribution:
        return self.likelihood(self.decoder(z))
