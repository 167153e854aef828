"""The VAE of Prince ch. 17: encoder g[x, theta] -> q(z|x) = Norm[mu, diag sigma_z^2], decoder f[z, phi] -> the
likelihood Pr(x|z), prior Norm[0, I]: one latent level of training/latent.py's interface.

`build_model` gives it, or the two-level VAE (training/hierarchical.py), from a ModelConfig.
"""

from __future__ import annotations

import torch

from training.config import ModelConfig
from training.distributions import DiagonalGaussian
from training.hierarchical import TwoLevelVAE
from training.latent import LatentModel
from training.likelihoods import PixelDistribution, build_likelihood
from training.networks import ImageShape, build_networks


class VAE(LatentModel):
    def __init__(self, cfg: ModelConfig, shape: ImageShape, levels: int = 256):
        super().__init__()
        self.cfg, self.shape = cfg, shape
        self.latent_dims = (cfg.latent_dim,)
        likelihood = build_likelihood(cfg, levels)
        self.encoder, self.decoder = build_networks(cfg, shape, 2 * cfg.latent_dim, cfg.latent_dim,
                                                    likelihood.params_per_channel)
        self.likelihood = likelihood

    def encode(self, x: torch.Tensor) -> list[DiagonalGaussian]:
        """[q(z|x)] for x (N, C, H, W) in [0, 1]; log-variance clamped so exp() stays finite."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (N, D) each
        return [DiagonalGaussian(mu, logvar.clamp(self.cfg.logvar_min, self.cfg.logvar_max))]

    def decode(self, z: torch.Tensor) -> PixelDistribution:
        """Pr(x|z) for z (N, D): its mean is f[z, phi] (N, C, H, W)."""
        return self.likelihood(self.decoder(z))


def build_model(cfg: ModelConfig, shape: ImageShape, levels: int = 256) -> LatentModel:
    """The flat VAE, or the two-level one (cfg.hierarchy = "two-level"), for images of `shape` with `levels`
    pixel levels (what a discretized likelihood is over)."""
    return TwoLevelVAE(cfg, shape, levels) if cfg.hierarchy == "two-level" else VAE(cfg, shape, levels)
